// Duty officer's console (值班民警 · 综合指挥调度室): live incident queue, the selected incident,
// one-key actions, linked dispatch status, video, timeline and instructions to the unit.

import { applyI18n, bindLangToggle, onLangChange, t } from "./i18n.js";
import { startAlerts } from "./alerts.js";
import {
  can, connectLive, fmtDuration, fmtSeconds, fmtTime, get, h, kindLabel, loadMe, logout, now, post,
  serialised, startTimers, telLink, toast,
} from "./common.js";
import "./console_i18n.js";
import { hasPosition, offlineMap } from "./map.js";
import { CallPanel, callDetail } from "./call.js";

// Both from GET /api/me (boot): the configured agencies in their order, and the alarm kinds' registry.
let AGENCIES = [];
let KINDS = [];
const DISPATCH_ONE = "dispatch-"; // + agency key: one agency's dispatch button (never "dispatch_both")
const HISTORY_LIMIT = 200;
const BAD_CAMERA = new Set(["offline", "frozen", "dark", "error"]);
const DISPATCH_STEPS = [
  ["sent", "sent_at"], ["delivered", "delivered_at"], ["acknowledged", "acknowledged_at"], ["on_scene", "on_scene_at"],
];

const state = {
  me: null,
  role: "",
  readonly: true,
  ackTimeout: 30,
  incidents: new Map(), // open incidents (list view) by id
  selected: null, // selected incident id
  detail: null, // GET /api/incidents/{id} of the selected one
  unread: new Set(), // incident ids with unit replies not yet seen
  units: new Map(),
  devices: new Map(),
  cameras: null, // null: not loaded / unavailable; [] none
  camerasAt: 0,
  // What the detail column shows: "incident" (the selected one; with nothing selected, the idle overview;
  // new alarms are selected automatically), "overview" or "history" (chosen by the officer: kept until
  // an incident is picked or a new alarm arrives — the history search is never interrupted).
  view: "incident",
  hist: { unit: "", kind: "", outcome: "", since: "", until: "" },
  histRows: null,
};

const $ = (id) => document.getElementById(id);
let alerter;
let paintTimers = () => {};
let callPanel = null; // the live call card (call.js), moved into each incident's detail

// ------------------------------------------------------------------ boot

async function boot() {
  applyI18n(document);
  bindLangToggle($("lang"));
  // Bound before anything is awaited, so the first click after the page loads is never lost: the history search
  // waits for GET /api/me, then runs (and is never a native submission reloading the page).
  $("logout").addEventListener("click", logout);
  const ready = loadMe().then((me) => { state.me = me; });
  const whenReady = (fn) => ready.then(fn, () => null);  // (a failed load is told by boot's catch)
  $("hist-form").addEventListener("submit", (e) => { e.preventDefault(); whenReady(() => searchHistory(readHistoryForm())); });
  $("hist-reset").addEventListener("click",
    () => whenReady(() => searchHistory({ unit: "", kind: "", outcome: "", since: "", until: "" })));
  await ready;
  AGENCIES = Object.keys(state.me.agencies || {});
  KINDS = (state.me.alarm_kinds || []).map((k) => k.id);
  state.role = state.me.user.role;
  if (state.role === "unit") return location.replace("/unit.html");
  if (state.role === "agency") return location.replace("/agency.html");
  state.readonly = !can(state.me, "act");
  callPanel = new CallPanel(h("section.card.call#call-panel"), { side: "command", canAct: !state.readonly });
  state.ackTimeout = state.me.escalation?.ack_timeout_s ?? 30;
  document.body.classList.toggle("readonly", state.readonly);
  $("station-name").textContent = state.me.station?.name || "";
  paintWho();

  alerter = startAlerts(state.me, { page: "console" }); // sound, #mute, title, notifications, health
  $("close-cancel").addEventListener("click", () => $("close-dialog").close());
  $("close-form").addEventListener("submit", onCloseSubmit);
  $("close-note").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("close-form").requestSubmit(); }
  });
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", routeFromHash);
  onLangChange(() => { paintWho(); renderAll(); if (state.view === "history") renderHistory(); });

  paintTimers = startTimers();
  const tick = () => { $("clock").textContent = fmtTime(new Date(now()).toISOString()); };
  tick();  // at once: an empty clock filled half a second later would shift the page under a finger
  setInterval(tick, 500);

  if (can(state.me, "admin")) $("rejections").hidden = false;
  const wanted = hashIncident();
  if (!wanted && /^#(overview|history)/.test(location.hash)) routeFromHash();
  await refetchAll();
  // the linked incident, unless the officer went elsewhere (history, overview) while the incidents loaded
  if (wanted && hashIncident() === wanted) select(wanted);
  connectLive({ onEvent, onOpen: refetchAll });
}

/** #incident/ID, #overview, #history?unit=…&kind=…&outcome=…&since=YYYY-MM-DD&until=YYYY-MM-DD */
function routeFromHash() {
  const id = hashIncident();
  if (id) { if (id !== state.selected || state.view !== "incident") select(id); return; }
  if (location.hash.startsWith("#history")) {
    const q = new URLSearchParams(location.hash.split("?")[1] || "");
    showView("history");
    searchHistory({ unit: q.get("unit") || "", kind: q.get("kind") || "", outcome: q.get("outcome") || "",
      since: q.get("since") || "", until: q.get("until") || "" }, { fromHash: true });
  } else if (location.hash === "#overview") {
    showView("overview");
  }
}

/** Switches the detail column to the overview or the history (leaving the selected incident). */
function showView(view) {
  state.view = view;
  if (view !== "incident") {
    state.selected = null;
    state.detail = null;
    if (view === "overview" && location.hash !== "#overview") history.replaceState(null, "", "#overview");
  }
  renderQueue();
  buildDetailSkeleton();
  renderPanels();
}

function paintWho() {
  const u = state.me.user;
  $("who").textContent = `${u.username} · ${t("role." + u.role)}${state.readonly ? " · " + t("readonly") : ""}`;
}

function hashIncident() {
  const m = location.hash.match(/^#incident\/(\d+)$/);
  return m ? Number(m[1]) : null;
}

// ---------------------------------------------------------------- data

// Coalesced like refreshDetail: a request made while a fetch is in flight runs once more after it,
// so the state always reflects a fetch that started after the last reason to refetch.
const refetchAll = serialised(async () => {
  const [incidents, units] = await Promise.all([get("/api/incidents?state=open"), get("/api/units")]);
  state.incidents = new Map(incidents.map((i) => [i.id, i]));
  state.units = new Map(units.map((u) => [u.id, u]));
  state.devices = new Map(units.flatMap((u) => u.devices.map((d) => [d.id, d])));
  if (can(state.me, "admin")) refreshRejections();
  autoSelect();
  if (state.selected) refreshDetail();
  renderAll();
});

let detailBusy = false;
let detailAgain = false;
async function refreshDetail() {
  if (!state.selected) return;
  if (detailBusy) { detailAgain = true; return; }
  detailBusy = true;
  const id = state.selected;
  try {
    const d = await get(`/api/incidents/${id}`);
    if (state.selected === id) {
      // Messages are append-only: keep any that arrived live while this fetch was in flight.
      if (state.detail && state.detail.id === id && state.detail.messages) {
        const byId = new Map([...d.messages, ...state.detail.messages].map((m) => [m.id, m]));
        d.messages = [...byId.values()].sort((a, b) => a.id - b.id);
      }
      state.detail = d;
      renderDetail();
    }
  } catch (err) {
    if (err.status === 404) { state.selected = null; state.detail = null; renderAll(); }
    else toast(err.message);
  } finally {
    detailBusy = false;
    if (detailAgain) { detailAgain = false; refreshDetail(); }
  }
}

let rejTimer = null;
function refreshRejections() {
  if (rejTimer) return;
  rejTimer = setTimeout(async () => {
    rejTimer = null;
    try { renderRejections(await get("/api/admin/rejections?limit=8")); } catch (err) { toast(err.message); }
  }, 300);
}

/**
 * The queue's order, the same as GET /api/incidents?state=open (dispatch/queries.py URGENCY):
 * unacknowledged and escalated first, then unacknowledged, then acknowledged but not linked out, then
 * dispatched / on scene; within each, the longest-waiting (earliest opened) first.
 */
function urgencyTier(inc) {
  if (inc.status === "new") return inc.escalation_level > 0 ? 0 : 1;
  if (inc.status === "acknowledged") return 2;
  return inc.status === "closed" ? 4 : 3;
}

function sortedIncidents() {
  return [...state.incidents.values()].sort((a, b) => urgencyTier(a) - urgencyTier(b)
    || Date.parse(a.opened_at) - Date.parse(b.opened_at) || a.id - b.id);
}

/**
 * Picks the most urgent open incident when the officer has none in hand: nothing selected, or the one
 * shown is closed and `replaceClosed` (it was just closed, or a new alarm came in). A closed incident
 * opened on purpose (from the history) otherwise stays.
 */
function autoSelect({ replaceClosed = false } = {}) {
  if (state.view !== "incident") return;
  if (state.selected) {
    const cur = state.incidents.get(state.selected) || (state.detail && state.detail.id === state.selected ? state.detail : null);
    if (!cur || cur.status !== "closed" || !replaceClosed) return;
  }
  const next = sortedIncidents()[0];
  if (next && next.id !== state.selected) select(next.id);
}

/** Shows incident `id` (`known`: its list view, e.g. a history row, shown until the detail arrives). */
function select(id, known = null) {
  const fromOtherView = state.view !== "incident";
  state.view = "incident";
  if (fromOtherView) renderPanels();
  if (state.selected !== id) {
    state.selected = id;
    const base = state.incidents.get(id) || (known && known.id === id ? known : null);
    state.detail = base ? { ...base } : null;
    state.unread.delete(id);
    history.replaceState(null, "", `#incident/${id}`);
    buildDetailSkeleton();
  }
  renderQueue();
  renderDetail();
  refreshDetail();
  const li = document.querySelector(`#queue [data-id="${id}"]`);
  if (li) li.scrollIntoView({ block: "nearest" });
}

function upsert(incident) {
  if (incident.status === "closed") state.incidents.delete(incident.id);
  else state.incidents.set(incident.id, { ...state.incidents.get(incident.id), ...incident });
  if (state.detail && state.detail.id === incident.id) Object.assign(state.detail, incident);
}

// --------------------------------------------------------------- events

function onEvent(ev) {
  // An event that lands while a full refetch is in flight may predate or postdate its snapshot:
  // fetch once more afterwards so nothing is lost.
  refetchAll.again();
  switch (ev.type) {
    case "incident.created":
      upsert(ev.incident);
      // A new alarm takes the screen from the overview or a closed incident (not from the history search,
      // nor from an open incident the officer is handling).
      if (state.view === "overview") state.view = "incident";
      autoSelect({ replaceClosed: true });
      break;
    case "incident.updated":
    case "incident.escalated":
      upsert(ev.incident);
      if (ev.incident.id === state.selected) { refreshDetail(); loadEvidence(); }
      if (ev.incident.status === "closed" && ev.incident.id === state.selected) autoSelect({ replaceClosed: true });
      else if (ev.incident.status === "closed") autoSelect();
      break;
    case "incident.message": {
      const m = ev.message;
      if (m.incident_id === state.selected && state.detail) {
        state.detail.messages = state.detail.messages || [];
        if (!state.detail.messages.some((x) => x.id === m.id)) state.detail.messages.push(m);
        refreshDetail();
      } else if (m.sender_role === "unit") {
        state.unread.add(m.incident_id);
      }
      if (m.sender_role === "unit") alerter.chime();
      break;
    }
    case "dispatch.updated": {
      const d = ev.dispatch;
      const inc = state.incidents.get(d.incident_id);
      for (const target of [inc, state.detail && state.detail.id === d.incident_id ? state.detail : null]) {
        if (!target) continue;
        const list = (target.dispatches || []).filter((x) => x.id !== d.id);
        list.push(d);
        target.dispatches = list.sort((a, b) => a.id - b.id);
      }
      if (d.incident_id === state.selected) refreshDetail();
      break;
    }
    case "alarm.received":
      if (ev.alarm && ev.alarm.incident_id === state.selected) refreshDetail();
      break;
    case "alarm.rejected":
      refreshRejections();
      return;
    case "call.updated":
    case "call.control":
      if (callPanel) callPanel.onEvent(ev);
      renderCallBanner();
      if (ev.call && ev.call.incident_id === state.selected) {
        refreshDetail(); // the timeline
        if (ev.call.recording) loadEvidence();
      }
      return;
    case "device.updated":
      if (ev.kind === "camera" && ev.camera) { // camera status: the overview shows it
        if (state.cameras) state.cameras = state.cameras.map((c) => (c.id === ev.camera.id ? { ...c, ...ev.camera } : c));
        renderOverview();
        return;
      }
      if (!ev.device) return;
      state.devices.set(ev.device.id, ev.device);
      renderDevices();
      renderOverview();
      return;
    case "resync":
      refetchAll();
      return;
    default:
      return;
  }
  scheduleRender();
}

let renderPending = false;
function scheduleRender() {
  if (renderPending) return;
  renderPending = true;
  requestAnimationFrame(() => { renderPending = false; renderQueue(); renderDetail(); renderOverview(); });
}

// -------------------------------------------------------------- actions

async function act(name) {
  if (state.readonly || !state.selected) return;
  const id = state.selected;
  const inc = state.detail || state.incidents.get(id);
  if (!inc || !actionEnabled(name, inc)) return;
  if (name === "resolve" || name === "false_alarm") return openClose(name === "resolve" ? "resolved" : "false_alarm");
  const btn = document.querySelector(`[data-action="${name}"]`);
  if (btn) btn.disabled = true;
  try {
    let result;
    if (name === "ack") result = await post(`/api/incidents/${id}/ack`);
    else if (name === "on_scene") result = await post(`/api/incidents/${id}/on_scene`);
    else {
      const agencies = name === "dispatch_both" ? AGENCIES : [name.slice(DISPATCH_ONE.length)];
      result = await post(`/api/incidents/${id}/dispatch`, { agencies });
    }
    upsert(result);
    scheduleRender();
    refreshDetail();
  } catch (err) {
    toast(`${t("error.generic")}: ${err.message}`);
  } finally {
    renderActions();
  }
}

function dispatchedAgencies(inc) { return new Set((inc.dispatches || []).map((d) => d.agency)); }

function actionEnabled(name, inc) {
  const st = inc.status;
  if (st === "closed") return false;
  const done = dispatchedAgencies(inc);
  switch (name) {
    case "ack": return st === "new";
    case "dispatch_both": return AGENCIES.some((a) => !done.has(a));
    case "on_scene": return st === "acknowledged" || st === "dispatched";
    case "resolve": case "false_alarm": return true;
    default: return name.startsWith(DISPATCH_ONE) && AGENCIES.includes(name.slice(DISPATCH_ONE.length))
      && !done.has(name.slice(DISPATCH_ONE.length));
  }
}

let closing = null;
function openClose(outcome) {
  closing = { id: state.selected, outcome };
  $("close-title").textContent = t("close.title." + outcome);
  $("close-note").value = "";
  $("close-dialog").dataset.outcome = outcome;
  $("close-dialog").showModal();
  $("close-note").focus();
}

async function onCloseSubmit(e) {
  e.preventDefault();
  if (!closing) return;
  const { id, outcome } = closing;
  const note = $("close-note").value.trim();
  $("close-confirm").disabled = true;
  try {
    const result = await post(`/api/incidents/${id}/close`, { outcome, note });
    $("close-dialog").close();
    closing = null;
    upsert(result);
    if (state.detail && state.detail.id === id) state.detail.status = "closed";
    buildDetailSkeleton(); // read-only now: no action bar, no message box
    autoSelect({ replaceClosed: true });
    scheduleRender();
    refreshDetail();
  } catch (err) {
    toast(`${t("error.generic")}: ${err.message}`);
  } finally {
    $("close-confirm").disabled = false;
  }
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const tag = (e.target.tagName || "").toLowerCase();
  if (tag === "input" || tag === "textarea" || tag === "select" || $("close-dialog").open) {
    if (e.key === "Escape" && $("close-dialog").open) $("close-dialog").close();
    return;
  }
  const key = e.key.toLowerCase();
  const map = { a: "ack", d: "dispatch_both", s: "on_scene", r: "resolve", f: "false_alarm" };
  if (map[key]) { e.preventDefault(); act(map[key]); return; }
  if (e.key === "ArrowDown" || e.key === "ArrowUp" || key === "j" || key === "k") {
    const list = sortedIncidents();
    if (!list.length) return;
    e.preventDefault();
    const idx = list.findIndex((i) => i.id === state.selected);
    const step = e.key === "ArrowDown" || key === "j" ? 1 : -1;
    const next = list[Math.max(0, Math.min(list.length - 1, idx + step))];
    if (next) select(next.id);
  }
}

async function sendMessage(text) {
  const input = $("msg-input");
  if (!input) return; // read-only (closed incident or assessor)
  text = (text ?? input.value).trim();
  if (!text || !state.selected) return;
  const btn = $("msg-send");
  btn.disabled = true;
  try {
    const m = await post(`/api/incidents/${state.selected}/messages`, { text });
    input.value = "";
    if (state.detail && !state.detail.messages?.some((x) => x.id === m.id)) {
      state.detail.messages = [...(state.detail.messages || []), m];
      renderMessages();
    }
  } catch (err) {
    toast(`${t("error.generic")}: ${err.message}`);
  } finally {
    btn.disabled = false;
  }
}

// -------------------------------------------------------------- render

function renderAll() {
  applyI18n(document);
  renderQueue();
  buildDetailSkeleton();
  renderDetail();
  renderDevices();
  renderPanels();
}

function renderQueue() {
  const list = sortedIncidents();
  $("queue-count").textContent = String(list.length);
  $("queue-count").classList.toggle("hot", list.some((i) => i.status === "new"));
  $("queue-empty").hidden = list.length > 0;
  const items = list.map((inc) => {
    const unacked = inc.status === "new";
    const li = h("li.queue-item", {
      dataset: { id: String(inc.id), status: inc.status },
      class: [
        inc.id === state.selected ? "selected" : "",
        unacked && inc.escalation_level > 0 ? "escalated" : "",
        unacked ? "unacked" : "",
      ].filter(Boolean).join(" "),
      tabindex: "0",
      role: "button",
      onclick: () => select(inc.id),
    },
    h("div.qi-top",
      h("span.timer", { dataset: { since: inc.opened_at, ...(unacked ? { lateAfter: String(state.ackTimeout) } : {}) } }),
      h("span.kind-badge", { dataset: { kind: inc.kind } }, kindLabel(inc.kind)),
    ),
    h("div.qi-unit", inc.unit?.name || inc.unit_id),
    h("div.qi-meta",
      h("span", inc.unit?.category || ""),
      h("span.qi-count", t("queue.alarms", { n: inc.alarm_count })),
      h("span.status-badge", { dataset: { status: inc.status } }, t("status." + inc.status)),
      unacked && inc.escalation_level > 0 ? h("span.esc-badge", t("queue.escalated")) : null,
      state.unread.has(inc.id) ? h("span.unread-dot", { title: t("section.messages") }, "●") : null,
    ));
    return li;
  });
  $("queue").replaceChildren(...items);
  paintTimers();
}

let skeletonFor = null; // "id:open" or "id:closed": a closed incident gets the read-only skeleton
const skeletonKey = () => {
  const d = state.detail && state.detail.id === state.selected ? state.detail : state.incidents.get(state.selected);
  return `${state.selected}:${d && d.status === "closed" ? "closed" : "open"}`;
};

function buildDetailSkeleton() {
  const body = $("detail-body");
  if (!state.selected) {
    if (callPanel) callPanel.setIncident(null);
    body.hidden = true;
    $("detail-none").hidden = true; // the overview (or the history) takes the column
    body.replaceChildren();
    skeletonFor = null;
    renderPanels();
    return;
  }
  $("detail-none").hidden = true;
  body.hidden = false;
  skeletonFor = skeletonKey();
  // Closed means closed: no action bar, no keys hint, no message box (the API refuses them too).
  const closedNow = skeletonFor.endsWith(":closed");
  const canAct = !state.readonly && !closedNow;
  renderPanels();
  const actionBtn = (name, cls, key, label = t("act." + name)) => h(`button.btn.act.${cls}`, {
    type: "button", dataset: { action: name }, onclick: () => act(name),
  }, h("span.act-label", label), key ? h("kbd", key) : null);
  // one button per configured agency (its short number, else its label), and one for all of them
  const number = (a) => state.me.agencies[a].phone || t("agency." + a);

  body.replaceChildren(
    h("div.d-head",
      h("div.d-title",
        h("div.d-name-row", h("h1#d-unit"),
          h("div.d-badges", h("span#d-status.status-badge.big"), h("span#d-kind.kind-badge.big"),
            h("span#d-esc.esc-badge.big", { hidden: true }, t("queue.escalated")))),
        h("div#d-where.d-where")),
      h("div.d-timer", h("span.lbl", t("detail.elapsed")), h("span#d-timer.timer.huge"))),
    h("div#d-closed.closed-banner", { hidden: true }),
    closedNow ? h("div#d-readonly.readonly-note", h("span", t("detail.readonly_closed")),
      h("a.btn-small.nav-link", { href: "#overview" }, t("detail.to_overview"))) : "", // ("": replaceChildren
    !canAct ? "" : h("div.d-actions#d-actions", //  would write a null as the text "null")
      actionBtn("ack", "btn-ack", "A"),
      actionBtn("dispatch_both", "btn-dispatch", "D",
        t("act.dispatch_both", { numbers: AGENCIES.map(number).join("+") })),
      ...AGENCIES.map((a) => actionBtn(DISPATCH_ONE + a, "btn-secondary", null,
        t("act.dispatch_one", { number: number(a) }))),
      actionBtn("on_scene", "btn-secondary", "S"),
      actionBtn("resolve", "btn-resolve", "R"),
      actionBtn("false_alarm", "btn-false", "F")),
    !canAct ? "" : h("p.keys-hint", t("act.keys")),
    h("div.d-grid",
      h("div.d-col",
        h("section.card.info", h("dl#d-info.info-list")),
        h("section.card.times", h("h3", t("section.times")), h("dl#d-times.times-list")),
        h("section.card.timeline", h("h3", t("section.timeline")), h("ol#d-timeline.tl-list"))),
      h("div.d-col",
        callPanel ? callPanel.root : null, // ===== CALL (call.js): phone video, large, above the fixed cameras =====
        h("section.card.dispatch", h("h3", t("section.dispatch")), h("div#d-dispatch.dispatch-rows")),
        // ===== VIDEO PANEL — filled from console/video.py (GET /api/cameras, live.mjpeg); see renderVideo =====
        h("section.card.video#video-panel", { dataset: { videoPanel: "" } },
          h("h3", t("section.video")), h("div#video-body.video-body")),
        h("section.card.evidence#evidence-panel",
          h("div.card-head", h("h3", t("evidence.title")),
            h("button#evidence-refresh.btn-small", { type: "button", onclick: () => loadEvidence() },
              t("evidence.refresh"))),
          h("ol#evidence-list.evidence-list"))),
      h("div.d-col",
        h("section.card.messages",
          h("h3", t("section.messages")),
          h("ol#d-messages.msg-list"),
          !canAct ? null : h("div.quick-row", [1, 2, 3, 4, 5].map((n) => h("button.chip", {
            type: "button", onclick: () => { $("msg-input").value = t(`msg.quick.${n}`); $("msg-input").focus(); },
          }, t(`msg.quick.${n}`)))),
          !canAct ? null : h("form#msg-form.msg-form", {
            onsubmit: (e) => { e.preventDefault(); sendMessage(); },
          }, h("input#msg-input", { placeholder: t("msg.placeholder"), maxlength: "2000", autocomplete: "off" }),
          h("button#msg-send.btn.btn-primary", { type: "submit" }, t("msg.send")))))),
  );
  videoFor = null;
  evidenceFor = null;
  evidenceShown = "";
}

function renderDetail() {
  if (!state.selected) { buildDetailSkeleton(); return; }
  if (skeletonFor !== skeletonKey()) buildDetailSkeleton();
  const d = state.detail;
  if (!d) return;
  const unit = d.unit || {};
  $("d-unit").textContent = unit.name || d.unit_id;
  const st = $("d-status");
  st.dataset.status = d.status;
  st.textContent = t("status." + d.status);
  $("d-kind").textContent = kindLabel(d.kind);
  $("d-kind").dataset.kind = d.kind;
  $("d-esc").hidden = !(d.status === "new" && d.escalation_level > 0);
  const timer = $("d-timer");
  timer.dataset.since = d.opened_at;
  if (d.status === "new") timer.dataset.lateAfter = String(state.ackTimeout);
  else delete timer.dataset.lateAfter;
  if (d.status === "closed") { // the same mm:ss as while it ran, stopped at the close
    delete timer.dataset.since;
    timer.textContent = fmtDuration((Date.parse(d.closed_at) - Date.parse(d.opened_at)) / 1000);
    timer.classList.remove("late");
  }
  const closed = $("d-closed");
  closed.hidden = d.status !== "closed";
  if (d.status === "closed") {
    closed.dataset.outcome = d.outcome || "";
    closed.textContent = t("detail.closed", {
      outcome: t("outcome." + d.outcome), who: d.closed_by || "", at: fmtTime(d.closed_at),
    }) + (d.close_note ? ` — ${d.close_note}` : "");
  }

  $("d-where").replaceChildren(
    h("span#d-address.d-address", unit.address || "—"),
    h("span.d-contact", h("span.contact-name", unit.contact_name || ""), " ", telLink(unit.contact_phone)));
  const row = (key, value, cls) => [h("dt", t(key)), h("dd", { class: cls }, value)];
  $("d-info").replaceChildren(
    ...row("detail.category", unit.category || "—"),
    ...row("detail.kind", kindLabel(d.kind)),
    ...row("detail.opened", fmtTime(d.opened_at)),
    ...row("detail.last", fmtTime(d.last_alarm_at)),
    ...row("detail.count", String(d.alarm_count), d.alarm_count > 1 ? "hot" : ""),
    ...row("detail.history", d.unit_incident_count === undefined ? "…" : h("a#d-history-link", {
      href: historyHash({ unit: d.unit_id }), title: t("nav.history"),
    }, t("detail.history.n", { n: d.unit_incident_count }))),
    ...(d.acknowledged_by ? row("detail.ackby", `${d.acknowledged_by} ${fmtTime(d.acknowledged_at)}`) : []),
  );
  renderActions();
  renderDispatch();
  if (callPanel) callPanel.setIncident(d);
  renderVideo();
  if (evidenceFor !== d.id) loadEvidence();
  renderMessages();
  renderTimes();
  renderTimeline();
  paintTimers();
}

function renderActions() {
  const d = state.detail;
  for (const btn of document.querySelectorAll("#d-actions [data-action]")) {
    btn.disabled = !d || !actionEnabled(btn.dataset.action, d);
  }
}

function renderDispatch() {
  const d = state.detail;
  const rows = AGENCIES.map((agency) => {
    const disp = (d.dispatches || []).find((x) => x.agency === agency);
    const status = disp ? disp.status : "none";
    const info = state.me.agencies?.[agency];
    return h("div.dispatch-row", { dataset: { agency, status } },
      h("div.dr-head",
        h("span.dr-agency", t("agency." + agency)),
        h("span.dr-name", info ? info.name : ""),
        h("span.dstatus", { dataset: { status } }, t("dstatus." + status))),
      h("ol.steps", DISPATCH_STEPS.map(([step, field]) => {
        const at = disp && disp[field];
        return h("li.step", { dataset: { step }, class: at ? "done" : "" },
          h("span.step-label", t("dstatus." + step)),
          h("span.step-time", at ? fmtTime(at) : "—"),
          step === "acknowledged" && disp && disp.acknowledged_by ? h("span.step-by", disp.acknowledged_by) : null);
      })),
      disp && disp.channels && disp.channels.length ? channelList(disp.channels) : null);
  });
  $("d-dispatch").replaceChildren(...rows);
}

/** A channel's name on the page: webhook and MQTT have strings; a plug-in channel (sms, ...) shows its name. */
function chanLabel(name) {
  const key = "chan." + name;
  const label = t(key);
  return label === key ? name : label;
}

// What each channel's far side confirmed: a webhook's 2xx or the agency's MQTT ack is "delivered";
// the MQTT broker taking it is only "sent".
function channelList(channels) {
  return h("ul.channels", channels.map((c) => h("li.channel", {
    dataset: { channel: c.channel, key: c.key, status: c.status },
    title: c.last_error || "",
  },
  h("span.ch-name", chanLabel(c.channel)),
  h("span.ch-status", t("chan.status." + c.status)),
  c.at ? h("span.ch-time", fmtTime(c.at)) : null,
  c.status === "pending" && c.attempts ? h("span.ch-attempts", t("chan.attempts", { n: c.attempts })) : null)));
}

// ===== VIDEO PANEL =====
// Cameras come from console/video.py: GET /api/cameras → {"cameras": [{id, unit_id, name, status, ...}]}
// (a bare list is accepted too), filtered by the incident's unit; each shows live MJPEG in an <img>.
// Any failure (route missing, 401/403/404/503, empty list, broken stream) degrades to "暂无视频".
let videoFor = null;
async function loadCameras() {
  if (state.cameras !== null && Date.now() - state.camerasAt < 30000) return state.cameras;
  try {
    // Plain fetch, not api(): a video failure must never log the officer out.
    const resp = await fetch("/api/cameras", { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!resp.ok) throw new Error(String(resp.status));
    const body = await resp.json();
    state.cameras = Array.isArray(body) ? body : Array.isArray(body.cameras) ? body.cameras : [];
  } catch {
    state.cameras = [];
  }
  state.camerasAt = Date.now();
  return state.cameras;
}

function videoPlaceholder(key) {
  return h("div.video-none", { dataset: { videoNone: "" } }, h("span.video-icon"), h("span", t(key)));
}

async function renderVideo() {
  const d = state.detail;
  const box = $("video-body");
  if (!box || !d) return;
  const key = `${d.id}:${d.unit_id}`;
  if (videoFor === key) return;
  videoFor = key;
  box.replaceChildren(videoPlaceholder("loading"));
  const cams = (await loadCameras()).filter((c) => c.unit_id === d.unit_id);
  if (videoFor !== key || !document.body.contains(box)) return;
  if (!cams.length) { box.replaceChildren(videoPlaceholder("video.none")); return; }
  box.replaceChildren(...cams.slice(0, 4).map((cam) => {
    const fig = h("figure.cam", { dataset: { cameraId: cam.id } });
    const img = h("img", {
      alt: cam.name || cam.id,
      src: `/api/cameras/${encodeURIComponent(cam.id)}/live.mjpeg?w=640&fps=10`,
      onerror: () => fig.replaceChildren(videoPlaceholder("video.offline"), h("figcaption", cam.name || cam.id)),
    });
    fig.append(img, h("figcaption", cam.name || cam.id, cam.location ? ` · ${cam.location}` : ""));
    return fig;
  }));
  box.dataset.count = String(cams.length);
}

// ===== INCOMING CALLS =====
// A unit calling the command room (call.js: direction to_command) while the officer looks elsewhere: a banner
// names the unit; one click shows that incident, whose call card has 接听.
function renderCallBanner() {
  let banner = $("call-banner");
  const incoming = callPanel ? callPanel.incoming().filter((c) => c.incident_id !== state.selected) : [];
  if (!incoming.length) { if (banner) banner.hidden = true; return; }
  if (!banner) {
    banner = h("button#call-banner.call-banner", { type: "button" });
    document.body.append(banner);
  }
  const call = incoming[0];
  const inc = state.incidents.get(call.incident_id);
  const unit = state.units.get(call.unit_id);
  banner.textContent = t("call.incoming.banner", { unit: unit ? unit.name : (inc && inc.unit && inc.unit.name) || call.unit_id });
  banner.dataset.incident = String(call.incident_id);
  banner.onclick = () => { select(call.incident_id); renderCallBanner(); };
  banner.hidden = false;
}

// ===== EVIDENCE =====
// GET /api/incidents/{id}/evidence → {files: [{file, kind: snapshot|clip|photo, camera_id, sha256, url}]}.
// Refetched when the incident is selected or updated, on the refresh button, and every few seconds
// while it is open (clips finish post_s after the alarm; photos arrive any time). Unchanged lists are
// not re-rendered, so a playing clip keeps playing.
const EVIDENCE_POLL_MS = 5000;
let evidenceFor = null;
let evidenceShown = "";
let evidenceBusy = false;
let evidenceAgain = false;
setInterval(() => {
  if (state.selected && state.detail && state.detail.status !== "closed" && !document.hidden) loadEvidence();
}, EVIDENCE_POLL_MS);

async function loadEvidence() {
  const id = state.selected;
  if (!id || !$("evidence-list")) return;
  evidenceFor = id;
  if (evidenceBusy) { evidenceAgain = true; return; }
  evidenceBusy = true;
  let files = [];
  try {
    // Plain fetch, not api(): evidence being unavailable must never log the officer out.
    const resp = await fetch(`/api/incidents/${id}/evidence`, { credentials: "same-origin", cache: "no-store" });
    if (resp.ok) files = (await resp.json()).files || [];
  } catch { /* offline: keep what is shown */ }
  finally {
    evidenceBusy = false;
  }
  if (state.selected === id) {
    renderEvidence(files);
    // A file saved after the detail was read: its record entry (证据已保存) belongs in the timeline too.
    const logged = new Set((state.detail?.timeline || []).filter((e) => e.action === "evidence.saved")
      .map((e) => (e.data || {}).sha256));
    if (state.detail?.id === id && files.some((f) => !logged.has(f.sha256))) refreshDetail();
  }
  if (evidenceAgain) { evidenceAgain = false; loadEvidence(); }
}

function shortSha(sha) { return sha ? `${sha.slice(0, 8)}…${sha.slice(-8)}` : "—"; }

function renderEvidence(files) {
  const list = $("evidence-list");
  if (!list) return;
  const order = { snapshot: 0, clip: 1, call: 2, call_snapshot: 3, photo: 4 };
  files = files.slice().sort((a, b) => (order[a.kind] ?? 3) - (order[b.kind] ?? 3) || a.file.localeCompare(b.file));
  const key = files.map((f) => f.file + ":" + f.sha256).join("|");
  if (key === evidenceShown && list.childElementCount) return;
  evidenceShown = key;
  list.dataset.count = String(files.length);
  if (!files.length) { list.replaceChildren(h("li.empty", t("evidence.none"))); return; }
  list.replaceChildren(...files.map((f) => {
    const url = f.url || `/api/evidence/${f.file}`;
    const media = f.kind === "call" // a call's recording: audio and video
      ? h("video", { src: url, controls: true, preload: "metadata", playsinline: true })
      : f.kind === "clip"
      ? h("video", { src: url, controls: true, preload: "metadata", muted: true, playsinline: true })
      : h("a", { href: url, target: "_blank", rel: "noopener" }, h("img", { src: url, alt: f.file, loading: "lazy" }));
    return h("li.ev-item", { dataset: { evidenceKind: f.kind, file: f.file, sha256: f.sha256 } },
      media,
      h("div.ev-meta",
        h("span.ev-kind", t("evidence.kind." + f.kind)),
        h("span.ev-cam", f.camera_id || ""),
        h("code.ev-sha", { title: `SHA-256 ${f.sha256}` }, `SHA-256 ${shortSha(f.sha256)}`)));
  }));
}

function renderMessages() {
  const d = state.detail;
  const list = $("d-messages");
  if (!list || !d) return;
  const msgs = d.messages || [];
  const wasAtBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren(...(msgs.length ? msgs.map((m) => h("li.msg", {
    dataset: { role: m.sender_role, id: String(m.id) },
    class: m.sender_role === "unit" ? "from-unit" : "from-officer",
  },
  h("div.msg-meta", `${m.sender_role === "unit" ? t("msg.from.unit") : t("msg.from.officer")} ${m.sender} · ${fmtTime(m.at)}`),
  h("div.msg-text", m.text))) : [h("li.empty", t("msg.empty"))]));
  if (wasAtBottom || msgs.length) list.scrollTop = list.scrollHeight;
}

function renderTimes() {
  const d = state.detail;
  const rt = d.response_times || {};
  $("d-times").replaceChildren(...["alarm_to_ack_s", "ack_to_dispatch_s", "alarm_to_dispatch_s"].flatMap((k) => [
    h("dt", t("times." + k)), h("dd", { dataset: { time: k } }, fmtSeconds(rt[k])),
  ]));
}

function timelineDetail(e) {
  const data = e.data || {};
  if (e.action.startsWith("call.")) return callDetail(e.action, data);
  const parts = [];
  if (data.agency) parts.push(t("agency." + data.agency));
  if (data.channel) parts.push(chanLabel(data.channel));
  if (data.kind && e.action === "alarm.received") parts.push(kindLabel(data.kind));
  if (data.device_id && data.device_id !== e.actor) parts.push(data.device_id);
  if (data.outcome) parts.push(t("outcome." + data.outcome));
  if (data.note) parts.push(data.note);
  if (data.text) parts.push(`“${data.text}”`);
  if (data.level) parts.push(`L${data.level}`);
  if (data.error) parts.push(data.error);
  if (e.action === "evidence.saved") parts.push(t("evidence.kind." + data.kind), shortSha(data.sha256));
  return parts.join(" · ");
}

function renderTimeline() {
  const d = state.detail;
  const list = $("d-timeline");
  if (!d.timeline) { list.replaceChildren(h("li.empty", t("loading"))); return; }
  list.replaceChildren(...d.timeline.map((e) => h("li.tl", { dataset: { event: e.action } },
    h("span.tl-time", fmtTime(e.at)),
    h("span.tl-body",
      h("span.tl-action", t("tl." + e.action)),
      h("span.tl-actor", e.actor === "system" ? t("tl.system") : e.actor),
      h("span.tl-detail", timelineDetail(e))))));
  list.scrollTop = list.scrollHeight;
}

function renderDevices() {
  const devices = [...state.devices.values()];
  const bad = devices.filter((d) => d.status === "offline" || d.status === "fault");
  const ok = devices.filter((d) => d.status === "online").length;
  const unknown = devices.length - bad.length - ok;
  const unitName = (id) => state.units.get(id)?.name || id;
  const chips = bad.map((d) => h("span.dev.bad", {
    dataset: { device: d.id, status: d.status }, title: d.detail || "",
  }, `${unitName(d.unit_id)} · ${d.id} · ${t("dev.status." + d.status)}`, d.status_since ? ` ${fmtTime(d.status_since)}` : ""));
  if (!devices.length) chips.push(h("span.dev", t("dev.none")));
  if (ok) chips.push(h("span.dev.ok", `${t("dev.status.online")} ${ok}`));
  if (unknown) chips.push(h("span.dev.unknown", `${t("dev.status.unknown")} ${unknown}`));
  $("devices").replaceChildren(...chips);
}

function renderRejections(data) {
  $("rej-total").textContent = t("rej.total", { n: data.total });
  const items = data.items || [];
  $("rej-list").replaceChildren(...(items.length ? items.map((r) => h("li", { dataset: { rejection: String(r.id) } },
    h("span.rej-time", fmtTime(r.received_at)), h("span.rej-src", r.source), h("code.rej-topic", r.topic),
    h("span.rej-reason", r.reason))) : [h("li.empty", t("rej.none"))]));
}

// ===== OVERVIEW AND HISTORY (detail column when no incident is shown) =====

/** Shows the panel the view calls for: the overview (nothing selected), the history, or neither. */
function renderPanels() {
  const history = state.view === "history";
  const overview = !history && !state.selected;
  $("overview").hidden = !overview;
  $("history-view").hidden = !history;
  $("nav-overview").classList.toggle("on", overview);
  $("nav-history").classList.toggle("on", history);
  if (overview) renderOverview();
  if (history) fillHistoryOptions();
}

// --- overview: the station's key units with their devices and cameras, and the map

let ovMap = null;
let camerasLoading = false;

function unitIncident(unitId) {
  for (const inc of state.incidents.values()) if (inc.unit_id === unitId) return inc;
  return null;
}

function camerasOf(unitId) { return (state.cameras || []).filter((c) => c.unit_id === unitId); }

function unitState(u) {
  if (unitIncident(u.id)) return "incident";
  const devs = (u.devices || []).map((d) => state.devices.get(d.id) || d);
  const cams = camerasOf(u.id);
  if (devs.some((d) => d.status === "offline" || d.status === "fault") || cams.some((c) => BAD_CAMERA.has(c.status))) return "fault";
  if (devs.length + cams.length && devs.every((d) => d.status === "online") && cams.every((c) => c.status === "online")) return "ok";
  return "unknown";
}

// At most one overview paint per OVERVIEW_MS (a burst of events repaints once, at its end too).
const OVERVIEW_MS = 250;
let overviewLast = 0;
let overviewTimer = null;
function renderOverview() {
  const box = $("overview");
  if (!box || box.hidden) return;
  const wait = overviewLast + OVERVIEW_MS - Date.now();
  if (wait > 0) {
    if (!overviewTimer) overviewTimer = setTimeout(() => { overviewTimer = null; renderOverview(); }, wait);
    return;
  }
  overviewLast = Date.now();
  paintOverview();
}

function paintOverview() {
  if ((state.cameras === null || Date.now() - state.camerasAt > 30000) && !camerasLoading) {
    camerasLoading = true;
    loadCameras().finally(() => { camerasLoading = false; renderOverview(); });
  }
  const units = [...state.units.values()];
  const open = state.incidents.size;
  const devs = [...state.devices.values()];
  const devBad = devs.filter((d) => d.status === "offline" || d.status === "fault").length;
  const camBad = (state.cameras || []).filter((c) => BAD_CAMERA.has(c.status)).length;
  $("ov-state").textContent = open ? t("ov.open", { n: open }) : t("ov.idle");
  $("ov-state").dataset.open = String(open);
  $("ov-summary").textContent = t("ov.summary", { units: units.length, dev: devBad, cam: camBad });

  const chip = (cls, status, text, title) => h(`span.${cls}`, { dataset: { status }, title: title || "" }, text);
  $("ov-units").replaceChildren(...units.map((u) => {
    const inc = unitIncident(u.id);
    const devices = (u.devices || []).map((d) => state.devices.get(d.id) || d);
    const cams = camerasOf(u.id);
    return h("tr", { dataset: { unit: u.id, state: unitState(u) } },
      h("td.l", h("div.ov-name", u.name), h("div.ov-cat", u.category || "")),
      h("td", inc ? h("button.btn-small.ov-inc", { type: "button", dataset: { status: inc.status }, onclick: () => select(inc.id) },
        h("span.status-badge", { dataset: { status: inc.status } }, t("status." + inc.status)), " ", kindLabel(inc.kind))
        : t("ov.none")),
      h("td.ov-devs", devices.length ? devices.map((d) => chip("dev-chip", d.status, `${d.id} · ${t("dev.status." + d.status)}`, d.detail))
        : h("span.muted", t("ov.no_devices"))),
      h("td.ov-cams", state.cameras === null ? t("ov.cams.loading") : cams.length
        ? cams.map((c) => chip("cam-chip", c.status, `${c.name || c.id} · ${t("cam.status." + c.status)}`, c.fault || ""))
        : h("span.muted", t("ov.no_devices"))),
      h("td.ov-pos", hasPosition(u) ? h("span.coords", `${Number(u.lat).toFixed(4)}, ${Number(u.lon).toFixed(4)}`)
        : h("span.muted", t("ov.nopos"))));
  }));
  const unplaced = units.filter((u) => !hasPosition(u)).length;
  $("ov-unplaced").hidden = !unplaced;
  $("ov-unplaced").textContent = t("ov.unplaced", { n: unplaced });

  if (!ovMap) ovMap = offlineMap($("ov-map"), { outlineLabel: t("ov.map.area") });
  ovMap.refresh();
  ovMap.setUnits(units, (u) => {
    const st = unitState(u);
    const inc = unitIncident(u.id);
    return { state: st, label: inc ? `${u.name} · ${kindLabel(inc.kind)} · ${t("status." + inc.status)}` : u.name };
  }, (u) => { const inc = unitIncident(u.id); if (inc) select(inc.id); });
}

// --- history: closed incidents, searchable by unit, kind, outcome and date

function historyHash(f) {
  const q = new URLSearchParams();
  for (const k of ["unit", "kind", "outcome", "since", "until"]) if (f[k]) q.set(k, f[k]);
  const qs = q.toString();
  return "#history" + (qs ? "?" + qs : "");
}

function readHistoryForm() {
  return { unit: $("hist-unit").value, kind: $("hist-kind").value, outcome: $("hist-outcome").value,
    since: $("hist-since").value, until: $("hist-until").value };
}

/** "YYYY-MM-DD" (the officer's calendar day) → the instant that day starts here, as ISO (UTC). */
function dayStart(day, plusDays = 0) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(day || "");
  if (!m) return null;
  return new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3]) + plusDays).toISOString();
}

const runHistory = serialised(async () => {
  const f = state.hist;
  const q = new URLSearchParams({ state: "closed", limit: String(HISTORY_LIMIT) });
  if (f.unit) q.set("unit_id", f.unit);
  if (f.kind) q.set("kind", f.kind);
  if (f.outcome) q.set("outcome", f.outcome);
  const since = dayStart(f.since);
  const until = dayStart(f.until, 1); // "to" day included
  if (since) q.set("since", since);
  if (until) q.set("until", until);
  $("history-view").dataset.loading = "1";
  try {
    state.histRows = await get("/api/incidents?" + q.toString());
  } finally {
    delete $("history-view").dataset.loading;
  }
  renderHistory();
});

function searchHistory(f, { fromHash = false } = {}) {
  state.hist = { unit: "", kind: "", outcome: "", since: "", until: "", ...f };
  if (state.view !== "history") showView("history");
  const hash = historyHash(state.hist);
  if (!fromHash && location.hash !== hash) history.replaceState(null, "", hash);
  fillHistoryForm();
  runHistory();
}

let histOptionsKey = "";
/** (Re)builds the filter lists when the units or the language changed, keeping what is chosen. */
function fillHistoryOptions() {
  const key = `${[...state.units.keys()].join(",")}|${t("hist.unit.all")}`;
  if (key === histOptionsKey) return;
  histOptionsKey = key;
  const chosen = readHistoryForm();
  const opt = (value, label) => h("option", { value }, label);
  $("hist-unit").replaceChildren(opt("", t("hist.unit.all")),
    ...[...state.units.values()].map((u) => opt(u.id, u.name)));
  $("hist-kind").replaceChildren(opt("", t("hist.kind.all")), ...KINDS.map((k) => opt(k, kindLabel(k))));
  $("hist-outcome").replaceChildren(opt("", t("hist.outcome.all")),
    ...["resolved", "false_alarm"].map((o) => opt(o, t("outcome." + o))));
  setHistoryForm(chosen);
}

function setHistoryForm(f) {
  // a unit named in a link before the unit list arrived still shows as chosen
  if (f.unit && ![...$("hist-unit").options].some((o) => o.value === f.unit)) {
    $("hist-unit").append(h("option", { value: f.unit }, f.unit));
  }
  $("hist-unit").value = f.unit;
  $("hist-kind").value = f.kind;
  $("hist-outcome").value = f.outcome;
  $("hist-since").value = f.since;
  $("hist-until").value = f.until;
}

function fillHistoryForm() {
  fillHistoryOptions();
  setHistoryForm(state.hist);
}

function renderHistory() {
  fillHistoryOptions();
  const rows = state.histRows || [];
  $("hist-count").textContent = state.histRows === null ? t("loading")
    : rows.length >= HISTORY_LIMIT ? t("hist.count.max", { n: rows.length }) : t("hist.count", { n: rows.length });
  $("hist-empty").hidden = state.histRows === null || rows.length > 0;
  $("hist-rows").replaceChildren(...rows.map((i) => h("tr.click", {
    dataset: { id: String(i.id), unit: i.unit_id, kind: i.kind, outcome: i.outcome || "" },
    tabindex: "0", onclick: () => select(i.id, i),
    onkeydown: (e) => { if (e.key === "Enter") select(i.id, i); },
  },
  h("td", fmtTime(i.opened_at)),
  h("td.l", i.unit?.name || i.unit_id),
  h("td", h("span.kind-badge", { dataset: { kind: i.kind } }, kindLabel(i.kind))),
  h("td", h("span.outcome-badge", { dataset: { outcome: i.outcome || "" } }, i.outcome ? t("outcome." + i.outcome) : "—")),
  h("td", i.acknowledged_by ? `${i.acknowledged_by} ${fmtTime(i.acknowledged_at)}` : "—"),
  h("td.mono", i.closed_at ? fmtDuration((Date.parse(i.closed_at) - Date.parse(i.opened_at)) / 1000) : "—"),
  h("td.l.hist-note", i.close_note || ""))));
}

boot().catch((err) => toast(err.message || String(err)));
