// The public report page (举报): anyone, without an account, on a phone. One form (description, an optional photo
// from the camera, the phone's position or a typed address); `?unit=ID[&facility=CODE]` from a unit's QR code names
// the place. The receipt is shown only once the server answered 201: nothing here claims what did not happen.
// A village/community fire assistant who is logged in files the same form as itself and sees its own reports.
//
// This page imports neither common.js (its 401 rule sends to the login page; its sound engine is for officers)
// nor anything that needs a session.
import { applyI18n, bindLangToggle, onLangChange, t } from "./i18n.js";
import "./report_i18n.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const UNIT_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const RECEIPT = /^[23456789ABCDEFGHJKMNPQRSTVWXYZ]{10}$/;
const MIN_CHARS = 4;
const MAX_CHARS = 1000;
const MAX_SIDE = 2048; // the server keeps at most this; shrinking first spares a villager's data plan
const RECEIPTS_KEY = "firelink.receipts";

const state = {
  unitId: UNIT_ID.test(params.get("unit") || "") ? params.get("unit") : null,
  facility: UNIT_ID.test(params.get("facility") || "") ? params.get("facility") : null,
  position: null, // {lat, lon, accuracy}
  photo: null, // a Blob
  assistant: null, // {csrf, username} when an assistant is logged in
  sending: false,
};

/** A tiny element builder: text only, never HTML. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

const shown = (code) => `${code.slice(0, 5)}-${code.slice(5)}`;
function normalise(text) {
  const code = String(text || "").replace(/[\s-]/g, "").toUpperCase();
  return RECEIPT.test(code) ? code : null;
}

async function call(method, path, { body, form, csrf } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (csrf) headers["X-CSRF-Token"] = csrf;
  const resp = await fetch(path, {
    method, headers, credentials: "same-origin", cache: "no-store",
    body: form || (body !== undefined ? JSON.stringify(body) : undefined),
  });
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  return { status: resp.status, data, retryAfter: resp.headers.get("Retry-After") };
}

// ---------------------------------------------------------------- the place a QR code names

async function showUnit() {
  if (!state.unitId) return;
  const r = await call("GET", `/api/public/units/${encodeURIComponent(state.unitId)}`).catch(() => null);
  if (!r || r.status !== 200) { state.unitId = null; state.facility = null; return; } // unknown: report by place
  $("unit-name").textContent = r.data.name;
  $("unit-banner").hidden = false;
  if (state.facility) {
    $("facility").textContent = t("rp.facility", { code: state.facility });
    $("facility").hidden = false;
  }
}

// ---------------------------------------------------------------- photo and position

/** The photo as sent: shrunk to MAX_SIDE as a JPEG when the browser can (the server re-encodes it anyway). */
async function prepared(file) {
  try {
    if (typeof createImageBitmap !== "function") return file;
    const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
    const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
    if (scale === 1 && file.size < 1.5e6) { bitmap.close(); return file; }
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    return blob || file;
  } catch {
    return file; // the server judges the original
  }
}

function bindPhoto() {
  const input = $("photo");
  const preview = $("photo-preview");
  input.addEventListener("change", async () => {
    const file = input.files && input.files[0];
    if (!file) return;
    state.photo = await prepared(file);
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.src = URL.createObjectURL(state.photo);
    preview.hidden = false;
    $("photo-clear").hidden = false;
  });
  $("photo-clear").addEventListener("click", () => {
    state.photo = null;
    input.value = "";
    if (preview.src) URL.revokeObjectURL(preview.src);
    preview.removeAttribute("src");
    preview.hidden = true;
    $("photo-clear").hidden = true;
  });
}

function bindLocate() {
  const out = $("loc-out");
  $("locate").addEventListener("click", () => {
    if (!navigator.geolocation) { out.textContent = t("rp.locate.failed"); return; }
    out.textContent = t("rp.locating");
    navigator.geolocation.getCurrentPosition((pos) => {
      state.position = { lat: pos.coords.latitude, lon: pos.coords.longitude, accuracy: pos.coords.accuracy };
      out.textContent = t("rp.located", { m: Math.max(1, Math.round(pos.coords.accuracy || 0)) });
    }, () => {
      state.position = null;
      out.textContent = t("rp.locate.failed");
    }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
  });
}

// ---------------------------------------------------------------- sending

function refusal(r) {
  if (r.status === 429) return t("rp.err.429", { s: r.retryAfter || "60" });
  if (r.status === 413) return t("rp.err.413");
  if (r.status === 403) return t("rp.err.403");
  if (r.status === 400) return t("rp.err.400", { msg: (r.data && r.data.error) || "" });
  return t("rp.err.other", { status: r.status });
}

function showError(text) {
  $("form-error").textContent = text;
  $("form-error").hidden = !text;
}

function rememberReceipt(code) {
  let list = [];
  try { list = JSON.parse(localStorage.getItem(RECEIPTS_KEY) || "[]"); } catch { list = []; }
  list = [code, ...list.filter((c) => c !== code && RECEIPT.test(c))].slice(0, 10);
  try { localStorage.setItem(RECEIPTS_KEY, JSON.stringify(list)); } catch { /* private mode */ }
  paintReceipts();
}

function paintReceipts() {
  let list = [];
  try { list = JSON.parse(localStorage.getItem(RECEIPTS_KEY) || "[]"); } catch { list = []; }
  $("my-receipts").replaceChildren(...list.filter((c) => RECEIPT.test(c)).map((c) => el("button", {
    type: "button", class: "chip rp-chip", onclick: () => { $("lookup-code").value = shown(c); lookup(c); },
  }, shown(c))));
}

async function submit(e) {
  e.preventDefault();
  if (state.sending) return;
  const description = $("description").value.trim();
  const address = $("address").value.trim();
  if (description.length < MIN_CHARS) { showError(t("rp.need.description", { n: MIN_CHARS })); return; }
  if (!state.unitId && !state.position && !address) { showError(t("rp.need.place")); return; }
  showError("");
  const form = new FormData();
  form.append("description", description);
  if (address) form.append("address", address);
  const phone = $("phone").value.trim();
  if (phone) form.append("contact_phone", phone);
  if (state.position) {
    form.append("lat", state.position.lat.toFixed(6));
    form.append("lon", state.position.lon.toFixed(6));
  }
  if (state.unitId) form.append("unit_id", state.unitId);
  if (state.unitId && state.facility) form.append("facility", state.facility);
  if (state.photo) form.append("photo", state.photo, "photo.jpg");
  state.sending = true;
  $("submit").disabled = true;
  $("submit").textContent = t("rp.sending");
  try {
    const r = state.assistant
      ? await call("POST", "/api/complaints", { form, csrf: state.assistant.csrf })
      : await call("POST", "/api/public/complaints", { form });
    if (r.status !== 201 || !r.data || !normalise(r.data.receipt)) { showError(refusal(r)); return; }
    const code = normalise(r.data.receipt);
    rememberReceipt(code);
    $("receipt").textContent = shown(code);
    $("report-form").hidden = true;
    $("done").hidden = false;
    $("done").scrollIntoView({ block: "start" });
    if (state.assistant) await loadMine();
  } catch {
    showError(t("rp.err.network"));
  } finally {
    state.sending = false;
    $("submit").disabled = false;
    $("submit").textContent = t("rp.submit");
  }
}

function reset() {
  $("report-form").reset();
  $("photo-clear").click();
  state.position = null;
  $("loc-out").textContent = "";
  $("done").hidden = true;
  $("report-form").hidden = false;
  paintCount();
}

function paintCount() {
  $("desc-count").textContent = t("rp.count", { n: $("description").value.length, max: MAX_CHARS });
}

// ---------------------------------------------------------------- following a report

function statusBlock(s) {
  return el("div", { class: "rp-st", dataset: { status: s.status } },
    el("p", { class: "rp-st-line" }, t("pst." + s.status)),
    el("p", { class: "legend" }, `${s.receipt} · ${t("rp.received_at", { t: fmtTime(s.received_at) })}`),
    s.reason ? el("p", {}, t("rp.reason", { r: s.reason })) : null);
}

async function lookup(code) {
  const out = $("lookup-out");
  out.hidden = false;
  if (!code) { out.replaceChildren(el("p", {}, t("rp.lookup.bad"))); return; }
  try {
    const r = await call("GET", `/api/public/complaints/${code}`);
    if (r.status === 200) out.replaceChildren(statusBlock(r.data));
    else if (r.status === 404) out.replaceChildren(el("p", {}, t("rp.lookup.none")));
    else out.replaceChildren(el("p", {}, refusal(r)));
  } catch {
    out.replaceChildren(el("p", {}, t("error.network")));
  }
}

async function loadMine() {
  const r = await call("GET", "/api/complaints?state=all");
  if (r.status !== 200) return;
  const list = $("mine-list");
  list.replaceChildren(...(r.data.length ? r.data.map((c) => el("li", { class: "rp-item", dataset: { status: c.status } },
    el("div", { class: "rp-st-line" }, t("pst." + c.status)),
    el("div", {}, c.description),
    el("div", { class: "legend" }, [c.unit_name, c.address].filter(Boolean).join(" · ")),
    el("div", { class: "legend" }, `${c.receipt} · ${t("rp.received_at", { t: fmtTime(c.received_at) })}`),
    c.reason ? el("div", {}, t("rp.reason", { r: c.reason })) : null))
    : [el("li", { class: "empty" }, t("rp.mine.none"))]));
}

/** A logged-in village/community fire assistant files as itself; anyone else (or no one) files anonymously. */
async function whoAmI() {
  const r = await call("GET", "/api/me").catch(() => null);
  if (!r || r.status !== 200 || !r.data || r.data.user.role !== "assistant") return;
  state.assistant = { csrf: r.data.csrf_token, username: r.data.user.username };
  $("who").textContent = `${r.data.user.real_name || r.data.user.username} · ${t("role.assistant")}`;
  $("who").hidden = false;
  $("logout").hidden = false;
  $("logout").addEventListener("click", async () => {
    await call("POST", "/api/logout", { body: {}, csrf: state.assistant.csrf }).catch(() => null);
    location.replace("/login.html");
  });
  $("mine").hidden = false;
  await loadMine();
}

function main() {
  applyI18n(document);
  bindLangToggle($("lang"));
  onLangChange(() => { paintCount(); });
  bindPhoto();
  bindLocate();
  $("description").addEventListener("input", paintCount);
  paintCount();
  $("report-form").addEventListener("submit", submit);
  $("again").addEventListener("click", reset);
  $("lookup-form").addEventListener("submit", (e) => {
    e.preventDefault();
    lookup(normalise($("lookup-code").value));
  });
  paintReceipts();
  showUnit();
  whoAmI();
}

main();
