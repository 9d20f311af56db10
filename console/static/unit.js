// Key unit's phone page (重点单位): press-and-hold one-key alarm, live status, officer's instructions, replies.

import { applyI18n, bindLangToggle, onLangChange, t } from "./i18n.js";
import { Alerter, connectLive, fmtTime, get, h, loadMe, logout, post, toast, upload } from "./common.js";
import "./console_i18n.js";
import { CallPanel } from "./call.js";

const HOLD_MS = 1000;
const MAX_PHOTO_BYTES = 8 * 1024 * 1024;
const SHORT_HINT_MS = 4000;
const $ = (id) => document.getElementById(id);
// hint: what the line under the button says besides the state-derived text — "short" (a tap, for a
// few seconds), "sending", "failed" (until the next alarm goes out); null: follow the incident's state.
const state = {
  me: null, unitId: null, unit: null, incident: null, messages: [], fresh: new Set(), sending: false, hint: null,
};
let alerter;
let callPanel = null; // the call with the command room (call.js): rings here, one tap answers
let me = null; // GET /api/me, under way from the start: an alarm raised before it is in goes out once it is

async function boot() {
  applyI18n(document);
  bindLangToggle($("lang"));
  me = loadMe();
  alerter = new Alerter(null, { step: true }); // "tap to enable sound" while the browser blocks it
  // Bound before anything is awaited: the alarm held (or 退出 tapped) right after the page opens is never lost.
  $("logout").addEventListener("click", logout);
  setupHold($("alarm-btn"));
  state.me = await me;
  if (state.me.user.role !== "unit") return location.replace(state.me.user.role === "agency" ? "/agency.html" : "/");
  state.unitId = state.me.user.unit_id;
  callPanel = new CallPanel($("call-zone"), { side: "unit" });
  $("reply-form").addEventListener("submit", (e) => { e.preventDefault(); reply(); });
  $("quick-replies").replaceChildren(...[1, 2, 3, 4].map((n) => h("button.chip", {
    type: "button", dataset: { quick: String(n) }, onclick: () => reply(t(`unit.quick.${n}`)),
  }, t(`unit.quick.${n}`))));
  onLangChange(() => {
    for (const b of document.querySelectorAll("[data-quick]")) b.textContent = t(`unit.quick.${b.dataset.quick}`);
    render();
  });
  $("photo-input").addEventListener("change", sendPhoto);
  await refetch();
  connectLive({ onEvent, onOpen: refetch });
}

async function refetch() {
  try {
    const [units, incidents] = await Promise.all([get("/api/units"), get("/api/incidents?state=open&limit=5")]);
    state.unit = units.find((u) => u.id === state.unitId) || null;
    const open = incidents.filter((i) => i.unit_id === state.unitId)[0];
    if (open) await loadIncident(open.id);
    else if (state.incident && state.incident.status !== "closed") await loadIncident(state.incident.id);
    render();
  } catch (err) { toast(err.message); }
}

function mergeMessages(a, b) {
  const byId = new Map([...a, ...b].map((m) => [m.id, m]));
  return [...byId.values()].sort((x, y) => x.id - y.id);
}

// Coalesced: one fetch at a time, and one more after it when events arrived meanwhile, so the
// last fetch always starts after the last event. A response to a fetch that started before an event
// is dropped (the queued fetch brings the newer state): a slow response never overwrites newer state.
let loading = null;
let loadAgain = null;
async function loadIncident(id) {
  if (loading) { loadAgain = id; return loading; }
  loading = (async () => {
    try {
      const d = await get(`/api/incidents/${id}`);
      if (loadAgain !== null) return;
      // Messages are append-only: keep any that arrived live while this fetch was in flight.
      const known = state.incident && state.incident.id === d.id ? state.messages : [];
      state.incident = d;
      state.messages = mergeMessages(d.messages || [], known);
      render();
    } finally {
      loading = null;
      if (loadAgain !== null) { const next = loadAgain; loadAgain = null; loadIncident(next).catch(() => {}); }
    }
  })();
  return loading;
}

function onEvent(ev) {
  if (ev.type === "incident.created" || ev.type === "incident.updated") {
    const inc = ev.incident;
    if (inc.unit_id !== state.unitId) return;
    if (state.incident && state.incident.id === inc.id) {
      Object.assign(state.incident, inc);
      loadIncident(inc.id).catch(() => {});
    } else if (inc.status !== "closed") {
      state.incident = inc;
      state.messages = [];
      loadIncident(inc.id).catch(() => {});
    }
  } else if (ev.type === "incident.message") {
    const m = ev.message;
    if (!state.incident || m.incident_id !== state.incident.id) {
      loadIncident(m.incident_id).catch(() => {});
    } else {
      state.messages = mergeMessages(state.messages, [m]);
      loadIncident(m.incident_id).catch(() => {});
    }
    if (m.sender_role !== "unit") {
      state.fresh.add(m.id);
      setTimeout(() => state.fresh.delete(m.id), 4000);
      alerter.chime();
      if (navigator.vibrate) navigator.vibrate([200, 100, 200]);
    }
  } else if (ev.type === "dispatch.updated") {
    if (state.incident && ev.incident_id === state.incident.id) loadIncident(state.incident.id).catch(() => {});
    return;
  } else if (ev.type === "call.updated" || ev.type === "call.control") {
    const call = callPanel.onEvent(ev);
    if (call && call.unit_id === state.unitId && (!state.incident || state.incident.id !== call.incident_id)) {
      loadIncident(call.incident_id).catch(() => {}); // a call about an incident this page has not loaded
    }
    return;
  } else if (ev.type === "resync") {
    refetch();
    return;
  } else {
    return;
  }
  render();
}

// -------------------------------------------------------------- hold-to-alarm

let shortTimer = null;
function setHint(kind) {
  state.hint = kind;
  paintHint();
}

/** The line under the button: what the user can do now, from the state (never a claim about the officer). */
function paintHint() {
  const hint = $("alarm-hint");
  const inc = state.incident;
  const open = !!inc && inc.status !== "closed";
  const key = state.hint === "short" ? "unit.hold.short"
    : state.hint === "sending" ? "unit.sending"
      : state.hint === "failed" ? "unit.failed"
        : open ? "unit.hold.again" : "unit.hold";
  hint.dataset.i18n = key;
  hint.dataset.state = state.hint || (open ? "open" : "idle");
  hint.textContent = t(key);
  hint.classList.toggle("warn", state.hint === "short" || state.hint === "failed");
}

function setupHold(btn) {
  let timer = null;
  let started = 0;
  let raf = 0;
  const paint = () => {
    const p = Math.min(1, (performance.now() - started) / HOLD_MS);
    btn.style.setProperty("--p", String(p));
    if (timer) raf = requestAnimationFrame(paint);
  };
  const start = (e) => {
    if (state.sending || timer) return;
    if (e.type === "keydown" && e.key !== "Enter" && e.key !== " ") return;
    e.preventDefault();
    alerter.unlock();
    started = performance.now();
    btn.classList.add("holding");
    if (state.hint === "short") setHint(null);
    timer = setTimeout(() => { timer = null; finish(); fire(); }, HOLD_MS);
    raf = requestAnimationFrame(paint);
  };
  const cancel = (e) => {
    if (e && e.type === "keyup" && e.key !== "Enter" && e.key !== " ") return;
    if (!timer) return;
    clearTimeout(timer);
    timer = null;
    finish();
    setHint("short");
    clearTimeout(shortTimer);
    shortTimer = setTimeout(() => { if (state.hint === "short") setHint(null); }, SHORT_HINT_MS);
  };
  const finish = () => {
    cancelAnimationFrame(raf);
    btn.classList.remove("holding");
    btn.style.setProperty("--p", "0");
  };
  btn.addEventListener("pointerdown", start);
  btn.addEventListener("keydown", start);
  for (const name of ["pointerup", "pointerleave", "pointercancel"]) btn.addEventListener(name, cancel);
  btn.addEventListener("keyup", cancel);
  btn.addEventListener("contextmenu", (e) => e.preventDefault());
}

async function fire() {
  state.sending = true;
  setHint("sending");
  $("alarm-btn").disabled = true;
  try {
    const unitId = (await me).user.unit_id;
    const res = await post(`/api/units/${encodeURIComponent(unitId)}/alarm`, { kind: "one_key" });
    if (navigator.vibrate) navigator.vibrate(300);
    state.hint = null;
    if (res.incident_id) await loadIncident(res.incident_id);
  } catch (err) {
    state.hint = "failed";
    toast(`${t("unit.failed")} (${err.message})`);
  } finally {
    state.sending = false;
    $("alarm-btn").disabled = false;
    render();
  }
}

// ------------------------------------------------------------------- photos

// A photo from the phone's camera becomes incident evidence (POST /api/incidents/{id}/photos).
let photosSent = 0;
async function sendPhoto() {
  const input = $("photo-input");
  const file = input.files && input.files[0];
  input.value = "";
  if (!file || !state.incident) return;
  const status = $("photo-status");
  const show = (key, extra = "") => {
    status.dataset.state = key.split(".")[1];
    status.textContent = t(key) + extra;
  };
  if (file.size > MAX_PHOTO_BYTES) { show("photo.failed", " (> 8 MB)"); return; }
  const form = new FormData();
  form.append("photo", file, file.name || "photo.jpg");
  show("photo.sending");
  $("photo-label").classList.add("busy");
  try {
    await upload(`/api/incidents/${state.incident.id}/photos`, form);
    photosSent += 1;
    show("photo.sent", photosSent > 1 ? ` ×${photosSent}` : "");
  } catch (err) {
    show("photo.failed", ` (${err.message})`);
    toast(`${t("photo.failed")}: ${err.message}`);
  } finally {
    $("photo-label").classList.remove("busy");
  }
}

async function reply(text) {
  const input = $("reply-input");
  text = (text ?? input.value).trim();
  if (!text || !state.incident) return;
  $("reply-send").disabled = true;
  try {
    const m = await post(`/api/incidents/${state.incident.id}/messages`, { text });
    if (text === input.value.trim()) input.value = "";
    if (!state.messages.some((x) => x.id === m.id)) state.messages.push(m);
    render();
  } catch (err) {
    toast(`${t("error.generic")}: ${err.message}`);
  } finally {
    $("reply-send").disabled = false;
  }
}

// -------------------------------------------------------------------- render

/**
 * What has happened, each with its time — only what the record shows: "notified 119" only for a dispatch
 * that exists (and went out), "on scene" only when an arrival was reported. While the incident is open,
 * the one awaited step (the officer's acknowledgement) is shown greyed; after the close nothing is awaited.
 */
function steps(inc) {
  const out = [];
  const step = (name, label, at, done = true, extra = {}) => out.push({ name, label, at, done, extra });
  const closed = inc.status === "closed";
  step("new", t("unit.step.new"), inc.opened_at);
  if (inc.acknowledged_at) step("acknowledged", t("unit.step.acknowledged"), inc.acknowledged_at);
  else if (!closed) step("acknowledged", t("unit.step.waiting_ack"), null, false);
  const dispatches = [...(inc.dispatches || [])].sort((a, b) => a.id - b.id);
  for (const d of dispatches) {
    const agency = t("agency." + d.agency);
    const sentAt = d.sent_at || d.delivered_at || d.acknowledged_at;
    if (sentAt) step("dispatched", t("unit.step.notified", { agency }), sentAt, true, { agency: d.agency });
    else if (!closed) step("dispatched", t("unit.step.notifying", { agency }), null, false, { agency: d.agency });
    if (d.acknowledged_at) step("agency_ack", t("unit.step.agency_ack", { agency }), d.acknowledged_at, true, { agency: d.agency });
    if (d.on_scene_at) step("on_scene", t("unit.step.agency_on_scene", { agency }), d.on_scene_at, true, { agency: d.agency });
  }
  if (inc.on_scene_at && !dispatches.some((d) => d.on_scene_at)) step("on_scene", t("unit.step.on_scene"), inc.on_scene_at);
  if (closed) step("closed", t("unit.step.closed." + (inc.outcome || "resolved")), inc.closed_at);
  // in time order (a dispatch's steps interleave with the incident's)
  return out.map((x, i) => ({ ...x, i })).sort((a, b) => {
    if (!a.at || !b.at) return a.at ? -1 : b.at ? 1 : a.i - b.i;
    return Date.parse(a.at) - Date.parse(b.at) || a.i - b.i;
  });
}

function render() {
  applyI18n(document);
  const u = state.unit;
  $("unit-name").textContent = u ? u.name : state.unitId || "";
  $("unit-address").textContent = u ? [u.category, u.address].filter(Boolean).join(" · ") : "";
  const inc = state.incident;
  const active = !!inc;
  const open = active && inc.status !== "closed";
  document.body.dataset.incident = !active ? "none" : open ? "open" : "closed";
  $("unit-status").hidden = !active;
  $("unit-idle").hidden = active;
  $("instructions").hidden = !active;
  $("photo-zone").hidden = !open;
  $("alarm-btn").classList.toggle("small", open);
  $("alarm-label").dataset.i18n = open ? "unit.again" : "unit.button";
  $("alarm-label").textContent = t($("alarm-label").dataset.i18n);
  paintHint();
  callPanel.setIncident(inc || null);
  if (!active) return;

  const box = $("unit-status");
  box.dataset.status = inc.status;
  $("status-line").textContent = !open ? t("unit.closed." + (inc.outcome || "resolved"))
    : inc.status === "new" ? t("unit.unacked") : t("unit.sent");
  $("unit-steps").replaceChildren(...steps(inc).map((x) => h("li", {
    dataset: { step: x.name, ...(x.extra.agency ? { agency: x.extra.agency } : {}) }, class: x.done ? "done" : "pending",
  }, h("span.what", x.label), h("span.when", x.at ? fmtTime(x.at) : ""))));

  // The officer's instructions first (newest on top, large), then the unit's own replies.
  const newest = (a, b) => b.id - a.id;
  const msgs = [...state.messages.filter((m) => m.sender_role !== "unit").sort(newest),
    ...state.messages.filter((m) => m.sender_role === "unit").sort(newest)];
  $("instr-list").replaceChildren(...(msgs.length ? msgs.map((m) => h("li.instr", {
    dataset: { id: String(m.id), role: m.sender_role },
    class: (m.sender_role === "unit" ? "from-unit" : "from-officer") + (state.fresh.has(m.id) ? " fresh" : ""),
  }, h("div.msg-text", m.text),
  h("div.msg-meta", `${m.sender_role === "unit" ? t("msg.from.unit") : t("msg.from.officer")} · ${fmtTime(m.at)}`)))
    : [h("li.empty", t("unit.no_instructions"))]));
  $("reply-form").hidden = !open;
  $("quick-replies").hidden = !open;
}

boot().catch((err) => toast(err.message || String(err)));
