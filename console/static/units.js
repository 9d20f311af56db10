// Unit registry page (单位档案): search and filter the units of the officer's scope, open one (#UNIT_ID) with its
// devices, cameras and history, create/edit it (taxonomy two-level select, position picked on the offline map or
// from the phone's GPS), retire it, import a CSV/XLSX (row errors shown, nothing imported on any error), export,
// print its QR sheet. Officers write; assessors read.
import { applyI18n, bindLangToggle, getLang, onLangChange, t } from "./i18n.js";
import "./hazards_i18n.js"; // shared page words (指挥调度, 隐患整改)
import "./units_i18n.js"; // the page's strings, merged into i18n.js's table at import
import { ApiError, api, fmtTime, get, h, loadMe, logout, post, telLink, toast, upload } from "./common.js";
import { startAlerts } from "./alerts.js";
import { hasPosition, offlineMap } from "./map.js";

const PAGE = 50;
const state = {
  me: null, tax: null, options: { stations: [], officers: [] }, list: [], total: 0, offset: 0,
  selected: null, detail: null, editing: null, map: null, marker: null,
};
const $ = (id) => document.getElementById(id);
const officer = () => ["admin", "duty_officer"].includes(state.me.user.role);
const name = (x) => (x ? (getLang() === "en" ? x.en : x.zh) : "");

async function guard(fn) {
  try { return await fn(); } catch (err) { toast(err.message || t("error.generic")); return null; }
}

// ------------------------------------------------------------------ filters and list

function filters() {
  const q = new URLSearchParams();
  if ($("q").value.trim()) q.set("q", $("q").value.trim());
  if ($("f-class").value) q.set("unit_class", $("f-class").value);
  if ($("f-type").value) q.set("unit_type", $("f-type").value);
  if ($("f-station").value) q.set("station_id", $("f-station").value);
  if ($("f-retired").checked) q.set("include_retired", "true");
  return q;
}

function paintFilters() {
  const keep = { cls: $("f-class").value, type: $("f-type").value, station: $("f-station").value };
  $("f-class").replaceChildren(h("option", { value: "" }, t("un.class.all")),
    ...state.tax.classes.map((c) => h("option", { value: c.code, selected: c.code === keep.cls }, name(c))));
  const cls = state.tax.classes.find((c) => c.code === $("f-class").value);
  const types = cls ? cls.types : state.tax.classes.flatMap((c) => c.types);
  $("f-type").replaceChildren(h("option", { value: "" }, t("un.type.all")),
    ...types.map((x) => h("option", { value: x.code, selected: x.code === keep.type }, name(x))));
  $("f-station").replaceChildren(h("option", { value: "" }, t("un.station.all")),
    ...state.options.stations.map((s) => h("option", { value: s.id, selected: s.id === keep.station }, s.name)));
  $("f-station").hidden = state.options.stations.length < 2;
}

function paintExports() {
  const q = filters();
  for (const fmt of ["csv", "xlsx"]) {
    q.set("format", fmt);
    $("export-" + fmt).href = "/api/units/export?" + q.toString();
  }
}

async function refreshList() {
  const q = filters();
  q.set("limit", String(PAGE));
  q.set("offset", String(state.offset));
  const resp = await fetch("/api/units?" + q.toString(), { credentials: "same-origin", cache: "no-store",
    headers: { Accept: "application/json" } });
  if (!resp.ok) {
    await api("GET", "/api/units?" + q.toString()); // the shared error path (401 → login, message)
    return;
  }
  state.list = await resp.json();
  state.total = Number(resp.headers.get("X-Total-Count") || state.list.length);
  paintList();
  paintExports();
}

function paintList() {
  $("count").textContent = t("un.count", { n: state.total });
  const pages = Math.max(1, Math.ceil(state.total / PAGE));
  $("page").textContent = t("un.page", { page: Math.floor(state.offset / PAGE) + 1, pages });
  $("prev").disabled = state.offset === 0;
  $("next").disabled = state.offset + PAGE >= state.total;
  if (!state.list.length) {
    $("un-list").replaceChildren(h("li.empty", t("un.none")));
    return;
  }
  $("un-list").replaceChildren(...state.list.map((u) => h("li.hz-item.unit-item", {
    dataset: { id: u.id }, tabindex: "0", class: `${u.id === state.selected ? "selected" : ""} ${u.retired ? "retired" : ""}`,
    onclick: () => openUnit(u.id), onkeydown: (e) => { if (e.key === "Enter") openUnit(u.id); },
  },
  h("div.u", u.name, u.retired ? h("span.badge.retired", " ", t("un.retired")) : null),
  h("div", u.unit_type_name, u.station_name ? ` · ${u.station_name}` : ""),
  h("div.m", h("span", u.address || "—"), u.credit_code ? h("span", u.credit_code) : null))));
}

// ------------------------------------------------------------------ one unit

async function openUnit(id) {
  state.selected = id;
  state.editing = null;
  if (location.hash.slice(1) !== encodeURIComponent(id)) history.replaceState(null, "", "#" + encodeURIComponent(id));
  state.detail = await get(`/api/units/${encodeURIComponent(id)}`);
  paintList();
  paintDetail();
}

const facilityName = (code) => name(state.tax.facilities.find((f) => f.code === code)) || code;

function historyItem(e) {
  const d = e.data || {};
  let what = t("un.h." + e.action);
  if (e.action === "unit.created") what += ` (${t("un.h.via." + (d.via || "api"))})`;
  if (e.action === "unit.retired" && d.reason) what += ` · ${d.reason}`;
  const changes = e.action === "unit.updated" ? Object.entries(d.changes || {}).map(([field, c]) =>
    h("div.un-change", `${t("un.f." + field)}: ${show(c.before, field)} → ${show(c.after, field)}`)) : [];
  return h("li", { dataset: { action: e.action } }, h("span.at", fmtTime(e.at)), h("strong", what), ` · ${e.actor}`,
    ...changes);
}

const typeName = (code) => name(state.tax.classes.flatMap((c) => c.types).find((x) => x.code === code)) || code;
const stationName = (id) => (state.options.stations.find((s) => s.id === id) || {}).name || id;

/** A field's value as people read it (type, station and facilities by name). */
function show(v, field) {
  if (Array.isArray(v)) return v.length ? v.map(facilityName).join("、") : "—";
  if (v === null || v === undefined || v === "") return "—";
  if (field === "unit_type") return typeName(v);
  if (field === "station_id") return stationName(v);
  return String(v);
}

function paintDetail() {
  const d = state.detail;
  if (state.editing) return;
  if (!d) {
    $("detail").replaceChildren(h("p.empty.big", t("un.pick")));
    return;
  }
  const kv = (label, value) => [h("dt", label), h("dd", value === null || value === undefined || value === "" ? "—" : value)];
  const actions = h("div.row",
    h("a#qr-link.btn.btn-small", { href: `/api/units/${encodeURIComponent(d.id)}/qr.pdf`, target: "_blank" }, t("un.qr")),
    officer() && !d.retired ? h("button#edit-btn.btn", { type: "button", onclick: () => edit(d) }, t("un.edit")) : null,
    officer() && !d.retired ? h("button#retire-btn.btn.btn-danger", { type: "button", onclick: () => retire(d) },
      t("un.retire")) : null);
  $("detail").replaceChildren(
    h("h1#unit-name", d.name, d.retired ? h("span.badge.retired", " ", t("un.retired")) : null),
    h("div.legend", `${d.unit_class_name || ""} › ${d.unit_type_name} · ${t("un.version")} ${d.version}`),
    actions,
    h("dl.kv",
      kv(t("un.f.id"), d.id), kv(t("un.f.credit_code"), d.credit_code), kv(t("un.f.address"), d.address),
      kv(t("un.f.coords"), hasPosition(d) ? `${Number(d.lat).toFixed(6)}, ${Number(d.lon).toFixed(6)}` : ""),
      kv(t("un.f.contact_name"), d.contact_name), kv(t("un.f.contact_phone"), telLink(d.contact_phone)),
      kv(t("un.f.safety_manager_name"), d.safety_manager_name),
      kv(t("un.f.safety_manager_phone"), telLink(d.safety_manager_phone)),
      kv(t("un.f.floors"), d.floors), kv(t("un.f.area_m2"), d.area_m2), kv(t("un.f.occupancy"), d.occupancy),
      kv(t("un.f.facilities"), show(d.facilities)), kv(t("un.f.station"), d.station_name || d.station_id),
      kv(t("un.f.community_officer"), d.community_officer),
      d.open_incident_id ? kv(t("un.open_incident"), h("a", { href: `/#incident/${d.open_incident_id}` },
        `#${d.open_incident_id}`)) : null),
    h("section.card", h("h2", t("un.devices")), d.devices.length
      ? h("ul", d.devices.map((x) => h("li", `${x.id} · ${x.kind} · ${x.status}`))) : h("p.legend", t("un.devices.none")),
    h("h2", t("un.cameras")), d.cameras.length
      ? h("ul", d.cameras.map((c) => h("li", `${c.name}${c.location ? " · " + c.location : ""}`)))
      : h("p.legend", t("un.devices.none"))),
    h("section.card", h("h2", t("un.history")), h("ol#history.tl", d.history.map(historyItem))));
  toDetail();
}

/** The detail pane from its top; on a phone (one column) scrolled into view below the list. */
function toDetail() {
  $("detail").scrollTop = 0;
  if (window.matchMedia("(max-width: 760px)").matches) $("detail").scrollIntoView({ block: "start" });
}

async function retire(d) {
  if (!confirm(t("un.retire.confirm"))) return;
  const reason = prompt(t("un.retire.reason"), "") ?? "";
  await guard(async () => {
    await post(`/api/units/${encodeURIComponent(d.id)}/retire`, { version: d.version, reason: reason.slice(0, 500) });
    toast(t("un.retired"), "info");
    await refreshList();
    await openUnit(d.id);
  });
}

// ------------------------------------------------------------------ the form

function field(key, input) {
  return [h("label", { for: input.id }, t("un.f." + key)), input];
}

function edit(d) {
  state.editing = d || {};
  const u = state.editing;
  const isNew = !d;
  const inp = (id, attrs = {}) => h(`input#${id}`, attrs);
  const clsOf = (type) => state.tax.classes.find((c) => c.types.some((x) => x.code === type));
  const cls = h("select#u-class", {}, ...state.tax.classes.map((c) => h("option", { value: c.code }, name(c))));
  const type = h("select#u-type");
  const fillTypes = (want) => {
    const c = state.tax.classes.find((x) => x.code === cls.value);
    type.replaceChildren(...c.types.map((x) => h("option", { value: x.code, selected: x.code === want }, name(x))));
  };
  cls.value = (clsOf(u.unit_type) || state.tax.classes[0]).code;
  fillTypes(u.unit_type);
  cls.onchange = () => fillTypes(null);
  const lat = inp("u-lat", { type: "number", step: "any", min: "-90", max: "90", value: u.lat ?? "" });
  const lon = inp("u-lon", { type: "number", step: "any", min: "-180", max: "180", value: u.lon ?? "" });
  const gpsOut = h("span#u-gps-out.legend");
  const gps = h("button#u-gps.btn.btn-small", { type: "button", onclick: () => locate(lat, lon, gpsOut) }, t("un.f.gps"));
  const facilities = h("div#u-facilities.un-facilities", state.tax.facilities.map((f) => h("label",
    h("input", { type: "checkbox", value: f.code, checked: (u.facilities || []).includes(f.code) }), name(f))));
  const station = h("select#u-station", {}, ...state.options.stations.map((s) =>
    h("option", { value: s.id, selected: s.id === u.station_id }, s.name)));
  const officerSel = h("select#u-officer", {}, h("option", { value: "" }, t("un.f.none")),
    ...state.options.officers.map((o) => h("option", { value: o.username, selected: o.username === u.community_officer },
      o.real_name ? `${o.real_name}（${o.username}）` : o.username)));
  const mapEl = h("div#u-map.un-map");
  const form = h("form#unit-form.card.un-form", { onsubmit: (e) => { e.preventDefault(); save(isNew); } },
    h("h2", t(isNew ? "un.form.new" : "un.form.edit")),
    h("div.form-grid",
      isNew ? field("id", inp("u-id", { maxlength: "64", pattern: "[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}",
        placeholder: t("un.f.id.ph") })) : null,
      field("name", inp("u-name", { required: true, maxlength: "200", value: u.name || "" })),
      field("credit_code", inp("u-credit", { maxlength: "40", value: u.credit_code || "", autocomplete: "off" })),
      field("address", inp("u-address", { maxlength: "400", value: u.address || "" })),
      field("class", cls), field("type", type),
      h("label", t("un.f.coords")),
      h("div", h("div.un-coords", h("span", t("un.f.lat")), lat, h("span", t("un.f.lon")), lon, gps, gpsOut),
        h("div.legend", t("un.f.map_hint")), mapEl),
      field("contact_name", inp("u-contact", { maxlength: "100", value: u.contact_name || "" })),
      field("contact_phone", inp("u-contact-phone", { type: "tel", maxlength: "40", value: u.contact_phone || "" })),
      field("safety_manager_name", inp("u-manager", { maxlength: "100", value: u.safety_manager_name || "" })),
      field("safety_manager_phone", inp("u-manager-phone", { type: "tel", maxlength: "40",
        value: u.safety_manager_phone || "" })),
      field("floors", inp("u-floors", { type: "number", min: "0", max: "300", step: "1", value: u.floors ?? "" })),
      field("area_m2", inp("u-area", { type: "number", min: "0", step: "any", value: u.area_m2 ?? "" })),
      field("occupancy", inp("u-occupancy", { type: "number", min: "0", step: "1", value: u.occupancy ?? "" })),
      h("label", t("un.f.facilities")), facilities,
      field("station", station), field("community_officer", officerSel)),
    h("div.row", h("button#u-save.btn.btn-primary", { type: "submit" }, t("un.save")),
      h("button#u-cancel.btn", { type: "button", onclick: cancel }, t("un.cancel"))));
  $("detail").replaceChildren(form);
  toDetail();
  pickOnMap(mapEl, lat, lon);
}

/** The offline map under the form: the listed units for orientation; a click puts the unit there. */
function pickOnMap(el, lat, lon) {
  const L = window.L;
  const m = offlineMap(el, { outlineLabel: "" });
  state.map = m;
  m.setUnits(state.list.filter((u) => u.id !== state.editing.id), (u) => ({ state: "ok", label: u.name }));
  const place = (la, lo, center) => {
    if (state.marker) state.marker.setLatLng([la, lo]);
    else state.marker = L.circleMarker([la, lo], { radius: 10, weight: 3, color: "#fff", fillColor: "#4c9dff",
      fillOpacity: 0.9, className: "un-pick", interactive: false }).addTo(m.map);
    if (center) m.map.setView([la, lo], Math.max(m.map.getZoom(), 15));
  };
  state.marker = null;
  if (lat.value !== "" && lon.value !== "") place(Number(lat.value), Number(lon.value), true);
  m.map.on("click", (e) => {
    lat.value = e.latlng.lat.toFixed(6);
    lon.value = e.latlng.lng.toFixed(6);
    place(e.latlng.lat, e.latlng.lng, false);
  });
  const typed = () => {
    if (lat.value !== "" && lon.value !== "") place(Number(lat.value), Number(lon.value), true);
  };
  lat.onchange = typed;
  lon.onchange = typed;
  state.place = place;
  requestAnimationFrame(() => m.refresh());
}

function locate(lat, lon, out) {
  if (!navigator.geolocation) { out.textContent = t("un.f.gps.fail"); return; }
  navigator.geolocation.getCurrentPosition((pos) => {
    lat.value = pos.coords.latitude.toFixed(6);
    lon.value = pos.coords.longitude.toFixed(6);
    out.textContent = t("un.f.gps.ok", { m: Math.round(pos.coords.accuracy || 0) });
    state.place?.(pos.coords.latitude, pos.coords.longitude, true);
  }, () => { out.textContent = t("un.f.gps.fail"); }, { enableHighAccuracy: true, timeout: 15000 });
}

function formBody() {
  const val = (id) => $(id).value.trim();
  const num = (id) => (val(id) === "" ? null : Number(val(id)));
  return {
    name: val("u-name"), credit_code: val("u-credit"), address: val("u-address"), lat: num("u-lat"), lon: num("u-lon"),
    unit_type: $("u-type").value, contact_name: val("u-contact"), contact_phone: val("u-contact-phone"),
    safety_manager_name: val("u-manager"), safety_manager_phone: val("u-manager-phone"), floors: num("u-floors"),
    area_m2: num("u-area"), occupancy: num("u-occupancy"),
    facilities: [...$("u-facilities").querySelectorAll("input:checked")].map((x) => x.value),
    station_id: $("u-station").value || null, community_officer: $("u-officer").value,
  };
}

async function save(isNew) {
  const body = formBody();
  try {
    let saved;
    if (isNew) {
      if (val("u-id")) body.id = val("u-id");
      saved = await api("POST", "/api/units", body);
      toast(t("un.created"), "info");
    } else {
      saved = await api("PUT", `/api/units/${encodeURIComponent(state.editing.id)}`,
        { ...body, version: state.editing.version });
      toast(t("un.saved"), "info");
    }
    state.editing = null;
    await refreshList();
    await openUnit(saved.id);
  } catch (err) {
    if (err instanceof ApiError && err.status === 409 && err.body && err.body.version) {
      toast(t("un.stale"));
      state.editing = null;
      await openUnit(state.selected);
      return;
    }
    toast(err.message || t("error.generic"));
  }
}

function val(id) { return $(id) ? $(id).value.trim() : ""; }

function cancel() {
  state.editing = null;
  paintDetail();
}

// ------------------------------------------------------------------ import

async function importFile(file) {
  const box = $("import-result");
  box.hidden = true;
  const fd = new FormData();
  fd.append("file", file, file.name);
  try {
    const result = await upload("/api/units/import", fd);
    toast(t("un.imported", { n: result.imported }), "info");
    state.offset = 0;
    await refreshList();
  } catch (err) {
    const errors = err instanceof ApiError && err.body && Array.isArray(err.body.errors) ? err.body.errors : null;
    if (!errors) { toast(err.message || t("error.generic")); return; }
    box.replaceChildren(h("h2", t("un.import.failed")), h("table#import-errors.un-errors",
      h("thead", h("tr", h("th", t("un.import.row")), h("th", t("un.import.message")))),
      h("tbody", errors.map((e) => h("tr", { dataset: { row: String(e.row) } }, h("td.r", String(e.row)),
        h("td", e.message))))));
    box.hidden = false;
  } finally {
    $("import-file").value = "";
  }
}

// ------------------------------------------------------------------ start

async function main() {
  applyI18n(document);
  bindLangToggle($("lang"));
  $("logout").onclick = logout;
  const paintWho = () => { $("who").textContent = `${state.me.user.username} · ${t("role." + state.me.user.role)}`; };
  const ready = (async () => {
    state.me = await loadMe();
    startAlerts(state.me, { page: "units" });
    paintWho();
    [state.tax, state.options] = await Promise.all([get("/api/taxonomy"), get("/api/units/options")]);
    if (!officer()) {
      $("new-btn").hidden = true;
      $("import-label").hidden = true;
    }
    paintFilters();
    return true;
  })().catch((err) => { toast(err.message || t("error.generic")); return false; });
  // Every control is bound before anything is awaited, so the first click (or file chosen) after the page loads is
  // never lost: each waits for the page's data, then acts.
  const act = (fn) => ready.then((ok) => (ok ? guard(fn) : null));
  const reload = (change) => () => act(() => { change(); return refreshList(); });
  $("search").onsubmit = (e) => { e.preventDefault(); reload(() => { state.offset = 0; })(); };
  $("f-class").onchange = reload(() => { paintFilters(); state.offset = 0; });
  for (const id of ["f-type", "f-station", "f-retired"]) $(id).onchange = reload(() => { state.offset = 0; });
  $("prev").onclick = reload(() => { state.offset = Math.max(0, state.offset - PAGE); });
  $("next").onclick = reload(() => { state.offset += PAGE; });
  $("new-btn").onclick = () => act(() => { if (officer()) { state.selected = null; edit(null); } });
  $("import-file").onchange = () => {
    const f = $("import-file").files[0];
    if (f) act(() => (officer() ? importFile(f) : null));
  };
  if (!(await ready)) return;
  onLangChange(() => { applyI18n(document); paintWho(); paintFilters(); paintList(); if (!state.editing) paintDetail(); });
  await guard(refreshList);
  const wanted = decodeURIComponent(location.hash.slice(1));
  if (wanted) await guard(() => openUnit(wanted));
  window.addEventListener("hashchange", () => {
    const id = decodeURIComponent(location.hash.slice(1));
    if (id && id !== state.selected) guard(() => openUnit(id));
  });
}

main();
