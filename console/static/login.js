// Login: POST /api/login, keep the CSRF token, go back to `next` when it is one of the role's pages,
// else to the role's home page.
import { applyI18n, bindLangToggle, t } from "./i18n.js";
import { safeNext, setCsrf } from "./common.js";

const form = document.getElementById("login-form");
const errorEl = document.getElementById("login-error");
const submit = document.getElementById("login-submit");
const params = new URLSearchParams(location.search);

applyI18n(document);
bindLangToggle(document.getElementById("lang"));

setCsrf(null); // whatever session this tab had is gone (or never was): a new login brings a new token
if (params.get("reason") === "expired") {
  const note = document.getElementById("login-note");
  note.dataset.i18n = "login.expired";
  note.textContent = t("login.expired");
  note.hidden = false;
}

const destination = (role) => safeNext(role, params.get("next"));

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
