// Fire brigade / medical centre page (消防救援大队 / 120急救中心): dispatches sent to this agency,
// with 签收 (accept) and 到场 (on scene). Live over the WebSocket; a new dispatch sounds.

import { applyI18n, bindLangToggle, getLang, onLangChange, t } from "./i18n.js";
import {
  Alerter, connectLive, fmtTime, get, h, kindLabel, loadMe, logout, now, post, serialised, startTimers, telLink,
  toast,
} from "./common.js";
import "./console_i18n.js";
import { hasPosition, offlineMap } from "./map.js";
import { CallPanel } from "./call.js";

const $ = (id) => document.getElementById(id);
const UNACCEPTED = new Set(["pending", "sent", "delivered"]);
const state = { me: null, agency: null, dispatches: [], seen: null };
let alerter;
let callPanel = null; // a call of an incident whose dispatch this agency accepted (call.js): join, listen, talk
const callsAsked = new Set(); // incidents whose call state was fetched
let paintTimers = () => {};

async function boot() {
  applyI18n(document);
  bindLangToggle($("lang"));
  $("logout").addEventListener("click", logout);  // before anything is awaited: the first tap is never lost
  state.me = await loadMe();
  const role = state.me.user.role;
  if (role === "unit") return location.replace("/unit.html");
  if (role !== "agency") return location.replace("/");
  state.agency = state.me.user.agency;
  $("agency-name").textContent = state.me.agencies?.[state.agency]?.name || t("agency." + state.agency);
  $("who").textContent = state.me.user.username;
  // the fire-rescue brigade reads the supervision work of the stations it oversees (hazards, documents, KPIs)
  $("nav-supervision").hidden = $("nav-evaluation").hidden = !state.me.supervision;
  alerter = new Alerter($("sound-banner"));
  callPanel = new CallPanel($("call-zone"), {
    side: "agency", follow: true,
    label: (call) => state.dispatches.find((d) => d.incident?.id === call.incident_id)?.incident?.unit?.name || "",
  });
  onLangChange(render);
  paintTimers = startTimers();
  const tick = () => { $("clock").textContent = fmtTime(new Date(now()).toISOString()); };
  tick();  // at once: an empty clock filled half a second later would shift the page under a finger
  setInterval(tick, 500);
  await refetch();
  connectLive({ onEvent, onOpen: refetch });
}

const refetch = serialised(async () => {
  const list = await get("/api/dispatches?state=open");
  const ids = new Set(list.map((d) => d.id));
  if (state.seen && list.some((d) => !state.seen.has(d.id))) alerter.chime();
  state.seen = ids;
  state.dispatches = list;
  for (const d of list) { // accepted: a call in progress may be joined
    if (!UNACCEPTED.has(d.status) && d.incident && !callsAsked.has(d.incident.id)) {
      callsAsked.add(d.incident.id);
      callPanel.refresh(d.incident.id);
    }
  }
  render();
});

function onEvent(ev) {
  if (ev.type === "call.updated") { callPanel.onEvent(ev); return; }
  if (["dispatch.updated", "incident.updated", "incident.created", "resync"].includes(ev.type)) refetch();
}

async function act(d, what) {
  const btn = document.querySelector(`[data-dispatch="${d.id}"] [data-action="${what}"]`);
  if (btn) btn.disabled = true;
  try {
    const view = await post(`/api/dispatches/${d.id}/${what === "accept" ? "ack" : "on_scene"}`);
    Object.assign(d, view);
    renderedKey = ""; // (the pressed button was disabled: repaint even if nothing else changed)
    render();
    refetch();
  } catch (err) {
    toast(`${t("error.generic")}: ${err.message}`);
    renderedKey = "";
    render();
  }
}

function geoLink(unit) {
  if (unit.lat === null || unit.lat === undefined || unit.lon === null || unit.lon === undefined) {
    return h("span.muted", t("ag.nopos"));
  }
  const lat = Number(unit.lat).toFixed(5);
  const lon = Number(unit.lon).toFixed(5);
  return h("span", h("span.coords", `${lat}, ${lon}`),
    h("a.geo-link", { href: `geo:${lat},${lon}?q=${lat},${lon}(${encodeURIComponent(unit.name || "")})` }, t("ag.map")));
}

let renderedKey = "";
function render() {
  applyI18n(document);
  const list = [...state.dispatches].sort((a, b) => {
    const an = UNACCEPTED.has(a.status) ? 0 : 1;
    const bn = UNACCEPTED.has(b.status) ? 0 : 1;
    return an - bn || b.id - a.id;
  });
  const waiting = list.filter((d) => UNACCEPTED.has(d.status)).length;
  alerter.set(waiting ? "normal" : "off");
  // Unchanged data (a refetch after an event that changed nothing shown): keep the cards as they are,
  // so a button being pressed is not replaced under the finger between pointerdown and pointerup.
  const key = `${getLang()}|${JSON.stringify(list)}`;
  if (key === renderedKey) { paintTimers(); return; }
  renderedKey = key;
  $("ag-count").textContent = String(list.length);
  $("ag-count").classList.toggle("hot", waiting > 0);
  $("ag-empty").hidden = list.length > 0;
  $("dispatches").replaceChildren(...list.map((d) => {
    const inc = d.incident || {};
    const unit = inc.unit || {};
    const row = (key, value, cls) => [h("dt", t(key)), h("dd", { class: cls }, value)];
    return h("li.dcard", { dataset: { dispatch: String(d.id), status: d.status } },
      h("div.dcard-head",
        h("span.kind-badge.big", { dataset: { kind: inc.kind } }, kindLabel(inc.kind)),
        h("span.dstatus", { dataset: { status: d.status } },
          UNACCEPTED.has(d.status) ? t("ag.waiting") : t("dstatus." + d.status)),
        h("span.timer", { dataset: { since: d.created_at } })),
      h("h3.dcard-unit", unit.name || ""),
      h("dl.info-list",
        ...row("ag.address", unit.address || "—", "addr"),
        ...row("ag.position", geoLink(unit)),
        ...row("ag.contact", h("span", `${unit.contact_name || "—"} `, telLink(unit.contact_phone))),
        ...row("detail.category", unit.category || "—"),
        ...row("ag.dispatched_at", fmtTime(d.created_at)),
        ...row("ag.incident_status", t("status." + inc.status))),
      h("div.dcard-actions",
        h("button.btn.act.btn-ack", {
          type: "button", dataset: { action: "accept" }, disabled: !UNACCEPTED.has(d.status),
          onclick: () => act(d, "accept"),
        }, d.acknowledged_at ? `${t("ag.accept")} ✔ ${fmtTime(d.acknowledged_at)}` : t("ag.accept")),
        h("button.btn.act.btn-resolve", {
          type: "button", dataset: { action: "on_scene" }, disabled: d.status === "on_scene",
          onclick: () => act(d, "on_scene"),
        }, d.on_scene_at ? `${t("ag.on_scene")} ✔ ${fmtTime(d.on_scene_at)}` : t("ag.on_scene"))),
      hasPosition(unit) ? h("div.dcard-map-slot", { dataset: { unit: unit.id || "" } }) : null);
  }));
  attachMaps(list);
  paintTimers();
}

// One small offline map per dispatch card, kept across re-renders (moved into the new card) and
// removed with its dispatch; the unit's position on the locally drawn grid, no tiles fetched.
const maps = new Map(); // dispatch id → {el, m}
function attachMaps(list) {
  const live = new Set();
  for (const d of list) {
    const unit = d.incident?.unit || {};
    const slot = document.querySelector(`[data-dispatch="${d.id}"] .dcard-map-slot`);
    if (!slot || !hasPosition(unit)) continue;
    live.add(d.id);
    let entry = maps.get(d.id);
    if (!entry) {
      const el = h("div.dcard-map", { role: "img", title: t("ag.map.title") });
      slot.append(el);
      entry = { el, m: offlineMap(el, { wheel: false }) };
      maps.set(d.id, entry);
    } else {
      slot.append(entry.el);
    }
    entry.m.refresh();
    entry.m.setUnits([unit], (u) => ({ state: "incident", label: u.name || "" }));
  }
  for (const [id, entry] of maps) {
    if (!live.has(id)) { entry.m.map.remove(); maps.delete(id); }
  }
}

boot().catch((err) => toast(err.message || String(err)));
