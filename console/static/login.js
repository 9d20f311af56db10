// Login: POST /api/login, keep the CSRF token, go to the page for the user's role.
import { applyI18n, bindLangToggle, t } from "./i18n.js";
import { homeFor, setCsrf } from "./common.js";

const form = document.getElementById("login-form");
const errorEl = document.getElementById("login-error");
const submit = document.getElementById("login-submit");
const params = new URLSearchParams(location.search);

applyI18n(document);
bindLangToggle(document.getElementById("lang"));

if (params.get("reason") === "expired") {
  const note = document.getElementById("login-note");
  note.dataset.i18n = "login.expired";
  note.textContent = t("login.expired");
  note.hidden = false;
}

/** Only same-site paths of the page the role may use (never an open redirect). */
function destination(role) {
  const home = homeFor(role);
  const next = params.get("next") || "";
  if (!next.startsWith("/") || next.startsWith("//")) return home;
  const nextPage = next.split(/[?#]/)[0];
  const homePage = home === "/" ? ["/", "/index.html"] : [home];
  return homePage.includes(nextPage) ? next : home;
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  errorEl.hidden = true;
  submit.disabled = true;
  submit.textContent = t("login.busy");
  try {
    const resp = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({
        username: document.getElementById("username").value.trim(),
        password: document.getElementById("password").value,
      }),
    });
    const body = await resp.json().catch(() => ({}));
    if (!resp.ok) {
      errorEl.textContent = resp.status === 401 ? t("login.failed")
        : resp.status === 429 ? t("login.locked", { s: resp.headers.get("Retry-After") || "1" })
        : (body.error || t("error.generic"));
      errorEl.hidden = false;
      return;
    }
    setCsrf(body.csrf_token);
    location.replace(destination(body.user.role));
  } catch {
    errorEl.textContent = t("error.network");
    errorEl.hidden = false;
  } finally {
    submit.disabled = false;
    submit.textContent = t("login.submit");
  }
});
