// Phone inspection page (消防监督检查): open a unit (?unit=ID, or search), walk its checklist (pass / fail / N/A,
// a note and photos on a failure), sign, submit. The started inspection is kept on the phone (inspect_store.js)
// and survives a reload and a dropped connection; it is sent with its idempotency key when the network allows,
// and the page says honestly where it is: a draft on the phone, saved on the phone but not sent, or submitted.
import { applyI18n, bindLangToggle, getLang, onLangChange, t } from "./i18n.js";
import "./inspect_i18n.js"; // the page's strings, merged into i18n.js's table at import
import { api, fmtTime, get, h, loadMe, logout, toast, upload } from "./common.js";
import { allDrafts, deletePhoto, dropDraft, getPhoto, loadDraft, newId, putPhoto, saveDraft } from "./inspect_store.js";

const $ = (id) => document.getElementById(id);
const KINDS = ["daily", "pre_opening", "recheck"];
const RETRY_MS = 15000;
const PHOTO_SIDE = 2048;
const state = { me: null, unitId: null, draft: null, sending: false, urls: new Map() };

// ---------------------------------------------------------------- the draft on this phone

function save() {
  try {
    saveDraft(state.draft);
    return true;
  } catch {
    paintState("storage");
    return false;
  }
}

function newDraft(data, kind) {
  return {
    v: 1, unit_id: data.unit.id, unit: data.unit, kind, key: newId(), started_at: new Date().toISOString(),
    checklist: data.checklist, hazards: data.hazards_under_notice, answers: {}, rechecks: {}, photos: [],
    signature: null, signer_name: "", note: "", lat: null, lon: null, status: "editing", error: null, result: null,
  };
}

/** Where the inspection is, in words that never claim more than happened. */
function paintState(override) {
  const d = state.draft;
  const el = $("sync-state");
  const s = override || (state.sending ? "sending" : d ? (d.status === "editing" && d.error ? "rejected" : d.status) : "");
  el.hidden = !s;
  el.dataset.state = s;
  if (!s) return;
  let text = t("in.state." + s, { error: d && d.error ? d.error : "" });
  if (s === "queued" && !navigator.onLine) text = `${t("in.offline")} · ${text}`;
  el.textContent = text;
}

// ---------------------------------------------------------------- position

function position(timeout = 8000) {
  return new Promise((resolve) => {
    if (!navigator.geolocation) { resolve(null); return; }
    navigator.geolocation.getCurrentPosition(
      (p) => resolve({ lat: p.coords.latitude, lon: p.coords.longitude }), () => resolve(null),
      { enableHighAccuracy: true, timeout, maximumAge: 60000 });
  });
}

async function locate() {
  const here = await position();
  if (here && state.draft && state.draft.status === "editing") {
    Object.assign(state.draft, here);
    save();
  }
  paintGps();
}

function paintGps() {
  const d = state.draft;
  $("gps").textContent = d && d.lat !== null ? `${t("in.gps")} ${d.lat.toFixed(5)}, ${d.lon.toFixed(5)}` : t("in.gps.none");
}

// ---------------------------------------------------------------- photos

/** The photo as a JPEG at most PHOTO_SIDE px (the server re-encodes and stamps it again). */
async function shrink(file) {
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(1, PHOTO_SIDE / Math.max(bitmap.width, bitmap.height));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(bitmap.width * scale);
    canvas.height = Math.round(bitmap.height * scale);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
    bitmap.close();
    const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
    return blob || file;
  } catch {
    return file;
  }
}

async function addPhotos(itemId, files) {
  for (const file of files) {
    const here = (await position(4000)) || { lat: state.draft.lat, lon: state.draft.lon };
    const p = { client_id: newId(), item_id: itemId, taken_at: new Date().toISOString(), lat: here.lat, lon: here.lon,
      uploaded: null };
    const blob = await shrink(file);
    try {
      await putPhoto(p.client_id, blob);
    } catch {
      paintState("storage");
      return;
    }
    state.urls.set(p.client_id, URL.createObjectURL(blob));
    state.draft.photos.push(p);
    save();
  }
  paintItem(itemId);
  sendPhotos().catch(() => { /* no signal: sent with the inspection */ });
}

async function photoUrl(p) {
  if (!state.urls.has(p.client_id)) {
    const blob = await getPhoto(p.client_id).catch(() => null);
    state.urls.set(p.client_id, blob ? URL.createObjectURL(blob) : "");
  }
  return state.urls.get(p.client_id);
}

/** Sends the photos the server does not have yet (a resend with the same client id is harmless). */
async function sendPhotos() {
  const d = state.draft;
  for (const p of d.photos) {
    if (p.uploaded) continue;
    const blob = await getPhoto(p.client_id);
    if (!blob) throw new Error("photo missing on this phone");
    const form = new FormData();
    form.append("unit_id", d.unit_id);
    form.append("client_id", p.client_id);
    form.append("taken_at", p.taken_at);
    if (p.lat !== null && p.lat !== undefined) { form.append("lat", String(p.lat)); form.append("lon", String(p.lon)); }
    form.append("files", blob, `${p.client_id}.jpg`);
    const got = await upload("/api/inspection-photos", form);
    p.uploaded = { id: got.id, sha256: got.sha256 };
    save();
    paintItem(p.item_id);
  }
}

// ---------------------------------------------------------------- the checklist

function itemLabel(item) { return getLang() === "en" ? item.en : item.zh; }

function answered() {
  return state.draft.checklist.items.filter((i) => state.draft.answers[i.id]).length;
}

function paintProgress() {
  $("progress").textContent = t("in.progress", { n: answered(), total: state.draft.checklist.items.length });
}

function buildItems() {
  const d = state.draft;
  $("items").replaceChildren(...d.checklist.items.map((item, n) => {
    const note = h("textarea.item-note", { maxlength: "500", rows: "2", placeholder: t("in.note") });
    note.addEventListener("input", () => {
      d.answers[item.id] = { ...(d.answers[item.id] || { result: "fail" }), note: note.value };
      d.error = null;
      save();
    });
    const input = h("input.item-photo", { type: "file", accept: "image/*", capture: "environment", multiple: true,
      hidden: true });
    input.addEventListener("change", () => {
      const files = [...input.files];
      input.value = "";
      addPhotos(item.id, files).catch((err) => toast(err.message));
    });
    return h("li.item", { dataset: { item: item.id } },
      h("div.item-text", h("span.item-no", `${n + 1}.`), h("span.item-label", itemLabel(item))),
      h("span.cite", item.clause.citation),
      h("div.results", ...["pass", "fail", "na"].map((r) => h("button.res", {
        type: "button", dataset: { result: r }, "aria-pressed": "false",
        onclick: () => answer(item.id, r) }, t("in." + r)))),
      h("div.fail-box", { hidden: true }, note,
        h("div.row", h("label.photo-label", input, h("span", `📷 ${t("in.photo")}`)), h("div.thumbs"))));
  }));
  for (const item of d.checklist.items) paintItem(item.id);
  paintProgress();
}

function answer(itemId, result) {
  const d = state.draft;
  if (d.status !== "editing") return;
  const prev = d.answers[itemId] || {};
  d.answers[itemId] = { result, note: result === "fail" ? prev.note || "" : "" };
  d.error = null;
  save();
  paintItem(itemId);
  paintProgress();
  paintState();
}

function paintItem(itemId) {
  const li = document.querySelector(`.item[data-item="${CSS.escape(itemId || "")}"]`);
  if (!li) return;
  const a = state.draft.answers[itemId];
  li.dataset.result = a ? a.result : "";
  li.classList.toggle("missing", false);
  for (const b of li.querySelectorAll(".res")) b.setAttribute("aria-pressed", String(!!a && b.dataset.result === a.result));
  const box = li.querySelector(".fail-box");
  box.hidden = !a || a.result !== "fail";
  const note = li.querySelector(".item-note");
  if (a && document.activeElement !== note) note.value = a.note || "";
  const thumbs = li.querySelector(".thumbs");
  const mine = state.draft.photos.filter((p) => p.item_id === itemId);
  thumbs.replaceChildren(...mine.map((p) => {
    const img = h("img", { alt: "" });
    photoUrl(p).then((u) => { img.src = u; });
    return h("div.thumb", { dataset: { client: p.client_id, sent: String(!!p.uploaded) } }, img,
      p.uploaded ? t("in.photo.sent") : t("in.photo.local"));
  }));
}

function buildRechecks() {
  const d = state.draft;
  $("rechecks").hidden = d.kind !== "recheck";
  if (d.kind !== "recheck") return;
  const list = d.hazards || [];
  $("recheck-list").replaceChildren(list.length ? h("div", ...list.map((hz) => {
    const r = d.rechecks[hz.id] || {};
    const note = h("input.rc-note", { maxlength: "500", placeholder: t("in.recheck.note"), value: r.note || "" });
    note.addEventListener("input", () => { d.rechecks[hz.id] = { ...(d.rechecks[hz.id] || {}), note: note.value }; save(); });
    const btn = (ok) => h("button.res", { type: "button", dataset: { rectified: String(ok) },
      "aria-pressed": String(r.rectified === ok), onclick: () => {
        if (d.status !== "editing") return;
        d.rechecks[hz.id] = { ...(d.rechecks[hz.id] || {}), rectified: ok };
        save();
        buildRechecks();
      } }, t(ok ? "in.rectified" : "in.not_rectified"));
    return h("div.rc", { dataset: { hazard: String(hz.id) } },
      h("div", h("b", `${t("in.hazard")} #${hz.id} · ${hz.category_name}`)),
      h("div.cite", `${t("in.deadline")} ${fmtTime(hz.deadline)}`),
      h("div.results", btn(true), btn(false)), note);
  })) : h("p.unit-sub", t("in.rechecks.none")));
}

// ---------------------------------------------------------------- signature pad

function bindSignature() {
  const canvas = $("sig");
  const ctx = canvas.getContext("2d");
  let drawing = false;
  let moved = false;
  const at = (e) => {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  };
  canvas.addEventListener("pointerdown", (e) => {
    if (state.draft.status !== "editing") return;
    drawing = true;
    moved = false;
    canvas.setPointerCapture(e.pointerId);
    ctx.lineWidth = 4;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.strokeStyle = "#000";
    ctx.beginPath();
    ctx.moveTo(...at(e));
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    ctx.lineTo(...at(e));
    ctx.stroke();
    moved = true;
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    if (moved) {
      state.draft.signature = canvas.toDataURL("image/png");
      save();
    }
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);
  $("sig-clear").onclick = () => {
    if (state.draft.status !== "editing") return;
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    state.draft.signature = null;
    save();
  };
}

function paintSignature() {
  const canvas = $("sig");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!state.draft.signature) return;
  const img = new Image();
  img.onload = () => ctx.drawImage(img, 0, 0);
  img.src = state.draft.signature;
}

// ---------------------------------------------------------------- the sheet

function paintSheet() {
  const d = state.draft;
  $("picker").hidden = true;
  $("unit-head").hidden = false;
  $("sheet").hidden = d.status === "submitted";
  $("result").hidden = d.status !== "submitted";
  $("unit-name").textContent = d.unit.name;
  $("unit-address").textContent = d.unit.address || "";
  $("unit-type").textContent = `${d.checklist.unit_type_name} · ${d.checklist.name} · ${t("in.version", { v: d.checklist.version })}`;
  for (const b of document.querySelectorAll(".kind")) b.setAttribute("aria-pressed", String(b.dataset.kind === d.kind));
  const locked = d.status !== "editing";
  for (const el of $("sheet").querySelectorAll("button, textarea, input")) {
    if (el.id !== "lang" && el.id !== "logout") el.disabled = locked;
  }
  $("remarks").value = d.note || "";
  $("signer").value = d.signer_name || "";
  paintGps();
  if (d.status === "submitted") paintResult();
  paintState();
}

function paintResult() {
  const r = state.draft.result;
  $("result-number").textContent = r.number;
  $("result-pdf").href = r.pdf;
  $("result-hazards").replaceChildren(...(r.hazards.length ? r.hazards.map((hz) => h("li.result-hazard",
    h("a", { href: `/hazards.html#id=${hz.id}` }, `${t("in.hazard")} #${hz.id} · ${hz.category_name}`),
    h("div.cite", hz.clauses.map((c) => c.citation).join("、")))) : [h("li", t("in.result.none"))]));
  $("result-rechecked-box").hidden = !r.rechecked.length;
  $("result-rechecked").replaceChildren(...r.rechecked.map((hz) => h("li",
    h("a", { href: `/hazards.html#id=${hz.id}` }, `${t("in.hazard")} #${hz.id} · ${hz.category_name}`))));
}

function renderAll() {
  buildItems();
  buildRechecks();
  paintSignature();
  paintSheet();
}

async function start(kind) {
  const data = await get(`/api/units/${encodeURIComponent(state.unitId)}/inspection?kind=${kind}`);
  const old = state.draft && state.draft.status === "editing" ? state.draft : null;
  const d = newDraft(data, kind);
  if (old) {  // switching the kind keeps what was answered, signed and photographed
    const ids = new Set(d.checklist.items.map((i) => i.id));
    for (const [k, v] of Object.entries(old.answers)) if (ids.has(k)) d.answers[k] = v;
    Object.assign(d, { key: old.key, started_at: old.started_at, photos: old.photos, signature: old.signature,
      signer_name: old.signer_name, note: old.note, lat: old.lat, lon: old.lon });
  }
  state.draft = d;
  save();
  renderAll();
  if (d.lat === null) locate();
}

// ---------------------------------------------------------------- submitting

function check() {
  const d = state.draft;
  const missing = d.checklist.items.filter((i) => !d.answers[i.id]);
  if (missing.length) {
    for (const i of missing) document.querySelector(`.item[data-item="${CSS.escape(i.id)}"]`).classList.add("missing");
    document.querySelector(".item.missing").scrollIntoView({ block: "center" });
    return t("in.missing", { n: missing.length });
  }
  if (d.checklist.items.some((i) => d.answers[i.id].result === "fail" && !(d.answers[i.id].note || "").trim())) {
    return t("in.missing.note");
  }
  if (d.kind === "recheck" && (!(d.hazards || []).length
      || d.hazards.some((hz) => typeof (d.rechecks[hz.id] || {}).rectified !== "boolean"))) {
    return t("in.missing.recheck");
  }
  if (!d.signature) return t("in.missing.sig");
  return null;
}

function bodyOf(d) {
  const sent = new Set(d.checklist.items.map((i) => i.id));
  return {
    unit_id: d.unit_id, kind: d.kind, idempotency_key: d.key, checklist_version: d.checklist.version,
    items: d.checklist.items.map((i) => ({ item_id: i.id, result: d.answers[i.id].result,
      note: d.answers[i.id].result === "fail" ? d.answers[i.id].note.trim() : "" })),
    signature: d.signature, signer_name: d.signer_name.trim(), note: d.note.trim(), lat: d.lat, lon: d.lon,
    started_at: d.started_at,
    photos: d.photos.filter((p) => p.uploaded).map((p) => ({ photo_id: p.uploaded.id,
      item_id: sent.has(p.item_id) ? p.item_id : null })),
    rechecks: d.kind === "recheck" ? (d.hazards || []).map((hz) => ({ hazard_id: hz.id,
      rectified: d.rechecks[hz.id].rectified, note: (d.rechecks[hz.id].note || "").trim() })) : [],
  };
}

async function submit() {
  const d = state.draft;
  if (d.status !== "editing") return;
  d.note = $("remarks").value;
  d.signer_name = $("signer").value;
  const problem = check();
  if (problem) { toast(problem); return; }
  d.status = "queued";  // from here on the phone keeps it until the server has it
  d.error = null;
  if (!save()) { d.status = "editing"; return; }
  paintSheet();
  await send();
}

async function send() {
  const d = state.draft;
  if (!d || d.status !== "queued" || state.sending) return;
  state.sending = true;
  paintState();
  try {
    await sendPhotos();
    const got = await api("POST", "/api/inspections", bodyOf(d));
    d.status = "submitted";
    d.result = { id: got.id, number: got.number, pdf: got.pdf,
      hazards: got.hazards.map((hz) => ({ id: hz.id, category_name: hz.category_name, clauses: hz.clauses })),
      rechecked: got.rechecked.map((hz) => ({ id: hz.id, category_name: hz.category_name })) };
    save();
    for (const p of d.photos) deletePhoto(p.client_id).catch(() => { /* the draft no longer names it */ });
  } catch (err) {
    if (err.status === undefined || err.status === 0 || err.status >= 500) {
      d.error = null;  // no answer (no signal) or the server is down: still queued, retried
    } else {
      d.status = "editing";  // the server answered and refused: nothing was stored; the officer corrects it
      d.error = err.message;
    }
    save();
  } finally {
    state.sending = false;
    paintSheet();
  }
}

// ---------------------------------------------------------------- finding a unit

async function search(q) {
  const units = await get(`/api/units?q=${encodeURIComponent(q)}`);
  const needle = q.trim();
  const hits = units.filter((u) => !needle || u.name.includes(needle) || (u.address || "").includes(needle)).slice(0, 50);
  $("found").replaceChildren(...(hits.length ? hits.map((u) => h("li", h("button", { type: "button",
    onclick: () => { location.search = `?unit=${encodeURIComponent(u.id)}`; } }, u.name, h("small", u.address || ""))))
    : [h("li.unit-sub", t("in.search.none"))]));
}

function showPicker() {
  $("picker").hidden = false;
  $("sheet").hidden = true;
  const pending = allDrafts().filter((d) => d.status === "queued" || d.status === "editing");
  $("pending-title").hidden = !pending.length;
  $("pending").replaceChildren(...pending.map((d) => h("li", h("button", { type: "button",
    onclick: () => { location.search = `?unit=${encodeURIComponent(d.unit_id)}`; } }, d.unit.name,
    h("small", t("in.state." + d.status, { error: "" }))))));
  let timer = null;
  $("q").addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(() => search($("q").value).catch((err) => toast(err.message)), 250);
  });
  search("").catch((err) => toast(err.message));
}

// ---------------------------------------------------------------- start

async function main() {
  applyI18n(document);
  bindLangToggle($("lang"));
  $("logout").onclick = logout;
  try {
    state.me = await loadMe();
    $("who").textContent = state.me.user.real_name || state.me.user.username;
  } catch (err) {
    if (err.status !== 0) throw err;  // offline at load: the draft on the phone still opens
  }
  state.unitId = new URLSearchParams(location.search).get("unit");
  if (!state.unitId) { showPicker(); return; }
  for (const b of document.querySelectorAll(".kind")) {
    b.onclick = () => {
      if (state.draft.status !== "editing" || b.dataset.kind === state.draft.kind) return;
      start(b.dataset.kind).catch((err) => toast(t("in.load_failed", { error: err.message })));
    };
  }
  $("remarks").addEventListener("input", () => { state.draft.note = $("remarks").value; save(); });
  $("signer").addEventListener("input", () => { state.draft.signer_name = $("signer").value; save(); });
  $("submit").onclick = () => submit().catch((err) => toast(err.message));
  $("new").onclick = () => {
    dropDraft(state.unitId);
    state.draft = null;
    start(KINDS[0]).catch((err) => toast(t("in.load_failed", { error: err.message })));
  };
  bindSignature();
  onLangChange(() => { if (state.draft) { renderAll(); } });
  window.addEventListener("online", () => { paintState(); send(); });
  window.addEventListener("offline", () => paintState());
  setInterval(() => { if (state.draft && state.draft.status === "queued") send(); }, RETRY_MS);

  state.draft = loadDraft(state.unitId);
  if (state.draft) {
    renderAll();
    if (state.draft.status === "queued") await send();
    return;
  }
  try {
    await start(KINDS[0]);
  } catch (err) {
    toast(t("in.load_failed", { error: err.message }));
  }
}

main().catch((err) => toast(err.message || String(err)));
