// Triage (举报受理): the reports of the stations this officer sees — from the public page, the 96119 hotline and
// village/community fire assistants — live (a new one appears without a reload), each with its photo and its
// position on the offline map; accept one into a hazard (category, unit) or reject it with a reason.
import { applyI18n, bindLangToggle, onLangChange, t } from "./i18n.js";
import "./hazards_i18n.js";
import "./report_i18n.js";
import { connectLive, fmtTime, get, h, loadMe, logout, post, serialised, toast } from "./common.js";
import { startAlerts } from "./alerts.js";
import { hasPosition, offlineMap } from "./map.js";

const $ = (id) => document.getElementById(id);
const state = { me: null, cfg: null, units: [], list: [], selected: null, detail: null, fresh: new Set(), map: null };
const officer = () => ["admin", "duty_officer"].includes(state.me.user.role);

async function guard(fn) {
  try { return await fn(); } catch (err) { toast(err.message || t("error.generic")); return null; }
}

/** Metres between two WGS-84 points (haversine): the report's nearest units come first in the unit list. */
function metres(a, b) {
  const rad = (d) => (d * Math.PI) / 180;
  const dl = rad(b.lat - a.lat);
  const dn = rad(b.lon - a.lon);
  const x = Math.sin(dl / 2) ** 2 + Math.cos(rad(a.lat)) * Math.cos(rad(b.lat)) * Math.sin(dn / 2) ** 2;
  return 2 * 6371008.8 * Math.asin(Math.min(1, Math.sqrt(x)));
}

const refreshList = serialised(async () => {
  state.list = await get(`/api/complaints?state=${$("filter").value}`);
  paintList();
});

function paintList() {
  $("count").textContent = String(state.list.length);
  $("count").classList.toggle("hot", $("filter").value === "new" && state.list.length > 0);
  const items = state.list.map((c) => h("li.hz-item.tr-item", {
    dataset: { id: String(c.id), status: c.status, source: c.source }, tabindex: "0",
    class: [c.id === state.selected ? "selected" : "", state.fresh.has(c.id) ? "fresh" : ""].join(" "),
    onclick: () => guard(() => select(c.id)),
    onkeydown: (e) => { if (e.key === "Enter") guard(() => select(c.id)); },
  },
  h("div.u", c.unit_name || c.address || t("tr.position")),
  h("div.d", c.description),
  h("div.m", h("span.badge.st", t("tr.st." + c.status)), h("span", t("tr.src." + c.source)),
    h("span", fmtTime(c.received_at)), c.photo ? h("span.badge", t("tr.photo.short")) : null)));
  $("tr-list").replaceChildren(...(items.length ? items : [h("li.empty", t("tr.none"))]));
}

async function select(id) {
  state.selected = id;
  state.fresh.delete(id);
  state.detail = await get(`/api/complaints/${id}`);
  paintList();
  paintDetail();
}

function kv(pairs) {
  return h("dl.kv", ...pairs.filter(([, v]) => v !== null && v !== undefined && v !== "")
    .flatMap(([k, v]) => [h("dt", t(k)), h("dd", v)]));
}

function unitOptions(c) {
  const here = hasPosition(c) ? { lat: Number(c.lat), lon: Number(c.lon) } : null;
  const units = [...state.units];
  if (here) units.sort((a, b) => (hasPosition(a) ? metres(here, a) : 1e12) - (hasPosition(b) ? metres(here, b) : 1e12));
  const chosen = c.unit_id || (here && units.length && hasPosition(units[0]) ? units[0].id : "");
  return units.map((u) => h("option", { value: u.id, selected: u.id === chosen },
    here && hasPosition(u) ? `${u.name}（${Math.round(metres(here, u))} m）` : u.name));
}

function acceptForm(c) {
  const category = h("select#tr-category", {}, ...state.cfg.categories.map((k) => h("option", { value: k.key }, k.name)));
  const unit = h("select#tr-unit", {}, h("option", { value: "" }, "—"), ...unitOptions(c));
  const severity = h("select#tr-severity", {}, h("option", { value: "" }, "—"),
    h("option", { value: "general" }, t("sev.general")), h("option", { value: "major" }, t("sev.major")));
  const desc = h("textarea#tr-desc", { maxlength: "2000" });
  desc.value = c.description;
  const attach = h("input#tr-attach", { type: "checkbox", checked: true });
  const go = h("button#tr-accept.btn.btn-ok", { type: "button" }, t("tr.accept.go"));
  go.onclick = () => guard(async () => {
    if (!unit.value) { toast(t("tr.hazard_unit")); return; }
    go.disabled = true;
    try {
      const body = { category: category.value, unit_id: unit.value, attach_photo: attach.checked };
      if (severity.value) body.severity = severity.value;
      if (desc.value.trim() && desc.value.trim() !== c.description) body.description = desc.value.trim();
      const done = await post(`/api/complaints/${c.id}/accept`, body);
      toast(t("tr.accepted", { id: done.hazard.id }), "info");
      state.detail = done.complaint;
      paintDetail();
      await refreshList();
    } finally { go.disabled = false; }
  });
  return h("form.card#tr-accept-form", { onsubmit: (e) => e.preventDefault() }, h("h2", t("tr.accept")),
    h("div.form-grid",
      h("label", { for: "tr-category" }, t("tr.category")), category,
      h("label", { for: "tr-unit" }, t("tr.hazard_unit")), unit,
      h("label", { for: "tr-severity" }, t("tr.severity")), severity,
      h("label", { for: "tr-desc" }, t("tr.desc")), desc,
      c.photo ? h("label", { for: "tr-attach" }, t("tr.attach")) : null, c.photo ? attach : null),
    h("div.row", go));
}

function rejectForm(c) {
  const reason = h("textarea#tr-reason", { maxlength: "1000" });
  const go = h("button#tr-reject.btn.btn-danger", { type: "button" }, t("tr.reject.go"));
  go.onclick = () => guard(async () => {
    if (reason.value.trim().length < 2) { toast(t("tr.reject.need")); reason.focus(); return; }
    go.disabled = true;
    try {
      state.detail = await post(`/api/complaints/${c.id}/reject`, { reason: reason.value.trim() });
      toast(t("tr.rejected"), "info");
      paintDetail();
      await refreshList();
    } finally { go.disabled = false; }
  });
  return h("form.card#tr-reject-form", { onsubmit: (e) => e.preventDefault() }, h("h2", t("tr.reject")),
    h("label", { for: "tr-reason" }, t("tr.reject.reason")), reason, h("div.row", go));
}

function paintMap(c) {
  const el = $("tr-map");
  if (!el) return;
  if (state.map) { state.map.map.remove(); state.map = null; }
  if (!hasPosition(c) && !(c.unit_id && state.units.some((u) => u.id === c.unit_id && hasPosition(u)))) {
    el.hidden = true;
    return;
  }
  state.map = offlineMap(el, { outlineLabel: t("tr.position") });
  const shown = state.units.filter((u) => hasPosition(u)).map((u) => ({ ...u }));
  if (hasPosition(c)) shown.push({ id: `complaint-${c.id}`, lat: c.lat, lon: c.lon, name: t("tr.new_one") });
  state.map.setUnits(shown, (u) => (u.id === `complaint-${c.id}`
    ? { state: "complaint", label: t("tr.src." + c.source) }
    : { state: u.id === c.unit_id ? "fault" : "ok", label: u.name }));
}

function paintDetail() {
  const c = state.detail;
  const root = $("detail");
  if (!c) { root.replaceChildren(h("p.empty.big", t("tr.pick"))); return; }
  const routed = t("tr.routed." + c.routed_by);
  root.replaceChildren(...[
    h("h1", h("span.badge.st", t("tr.st." + c.status)), " ", t("tr.src." + c.source), " · ", c.receipt),
    h("p.tr-desc#tr-description", c.description),
    kv([["tr.received_at", fmtTime(c.received_at)], ["tr.unit", c.unit_name], ["tr.address", c.address],
      ["tr.position", hasPosition(c) ? `${Number(c.lat).toFixed(5)}, ${Number(c.lon).toFixed(5)}` : null],
      ["tr.phone", c.contact_phone], ["tr.reporter", c.source === "assistant" ? c.reporter : null],
      ["tr.ticket", c.ticket], ["tr.station", `${c.station_name} · ${routed}`],
      ["tr.reason", c.reject_reason || null],
      ["tr.st." + c.status, c.triaged_by ? t("tr.triaged", { by: c.triaged_by, t: fmtTime(c.triaged_at) }) : null]]),
    c.hazard_id ? h("p", h("a#tr-hazard-link.btn", { href: `/hazards.html#id=${c.hazard_id}` },
      `${t("tr.open_hazard")} #${c.hazard_id}`)) : null,
    c.photo ? h("div.card.tr-photo", h("h2", t("tr.photo")),
      h("a", { href: c.photo, target: "_blank" }, h("img#tr-photo", { src: c.photo, alt: t("tr.photo") }))) : null,
    h("div#tr-map.tr-map"),
    c.status === "received" && officer() ? h("div.tr-forms", acceptForm(c), rejectForm(c)) : null,
  ].filter(Boolean));
  paintMap(c);
}

async function main() {
  applyI18n(document);
  bindLangToggle($("lang"));
  $("logout").onclick = logout;
  state.me = await loadMe();
  startAlerts(state.me, { page: "triage" });
  const paintWho = () => { $("who").textContent = `${state.me.user.username} · ${t("role." + state.me.user.role)}`; };
  paintWho();
  const [cfg, units] = await Promise.all([get("/api/hazards/config"), get("/api/units")]);
  state.cfg = cfg;
  state.units = units;
  $("filter").onchange = () => guard(refreshList);
  onLangChange(() => { applyI18n(document); paintWho(); paintList(); paintDetail(); });
  await refreshList();
  connectLive({
    onOpen: () => refreshList(),
    onEvent: (ev) => {
      if (ev.type !== "complaint.received" && ev.type !== "complaint.updated") return;
      if (ev.type === "complaint.received") state.fresh.add(ev.complaint.id);
      refreshList();
      if (state.selected === ev.complaint.id && ev.type === "complaint.updated") {
        state.detail = ev.complaint;
        paintDetail();
      }
    },
  });
}

main();
