// Assessor dashboard (read-only): live counts, KPIs and ranking per period, trends (hand-drawn SVG),
// hazards by unit, case search with full timeline and evidence, CSV/PDF export.
import { applyI18n, bindLangToggle, onLangChange, t } from "./i18n.js";
import { api, can, fmtSeconds, fmtTime, get, h, loadMe, logout, now, svg, toast } from "./common.js";
import { num, pct } from "./hazards_i18n.js";
import { startAlerts } from "./alerts.js";
import { hasPosition, offlineMap } from "./map.js";
import { callDetail } from "./call.js";

const $ = (id) => document.getElementById(id);
let cfg = null;
let last = null;


/** Lines (series: [{name, color, values}]) over labels; nulls leave gaps. */
function lineChart(labels, series) {
  const W = 600, H = 220, L = 40, B = 24, T = 10;
  const all = series.flatMap((x) => x.values).filter((v) => v !== null);
  const max = Math.max(1, ...all);
  const x = (i) => L + (labels.length <= 1 ? 0 : (i * (W - L - 10)) / (labels.length - 1));
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img" });
  for (const f of [0, 0.5, 1]) {
    chart.append(svg("line", { x1: L, x2: W - 10, y1: y(max * f), y2: y(max * f), stroke: "#2a3542" }),
      svg("text", { x: 2, y: y(max * f) + 4 }, Math.round(max * f * 10) / 10));
  }
  const step = Math.max(1, Math.ceil(labels.length / 8));
  labels.forEach((lab, i) => { if (i % step === 0) chart.append(svg("text", { x: x(i) - 14, y: H - 6 }, lab.slice(5))); });
  for (const ser of series) {
    let d = "";
    ser.values.forEach((v, i) => { if (v !== null) d += `${d && ser.values[i - 1] !== null ? "L" : "M"}${x(i)},${y(v)}`; });
    chart.append(svg("path", { d, fill: "none", stroke: ser.color, "stroke-width": 2, "data-series": ser.name }));
    ser.values.forEach((v, i) => { if (v !== null) chart.append(svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: ser.color })); });
  }
  return h("div", chart, h("div.legend", series.flatMap((ser) => [h("i", { style: `background:${ser.color}` }), ser.name])));
}

/** Horizontal bars: [[label, value]]. */
function barChart(pairs, color = "#4c9dff") {
  const W = 600, rowH = 22, H = Math.max(40, pairs.length * rowH + 10), L = 190;
  const max = Math.max(1, ...pairs.map((p) => p[1]));
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, style: `height:${Math.max(4, H / 16)}em` });
  pairs.forEach(([lab, v], i) => {
    const y = 6 + i * rowH;
    chart.append(svg("text", { x: 4, y: y + 14 }, lab.length > 14 ? lab.slice(0, 14) + "…" : lab),
      svg("rect", { x: L, y, width: ((W - L - 40) * v) / max, height: rowH - 6, fill: color, rx: 3 }),
      svg("text", { x: L + ((W - L - 40) * v) / max + 4, y: y + 14 }, v));
  });
  return chart;
}

function table(cols, rows, onClick) {
  return h("table.kt", h("thead", h("tr", cols.map((c) => h("th", { class: c.left ? "l" : "" }, t(c.label))))),
    h("tbody", rows.map((r) => h("tr", { class: onClick ? "click" : "", onclick: onClick ? () => onClick(r) : null },
      cols.map((c) => h("td", { class: c.left ? "l" : "" }, c.f(r)))))));
}

function stat(label, value, hot) {
  return h("div.stat", { class: hot ? "hot" : "" }, h("div.v", value), h("div.l", label));
}

/** KPI response times: whole seconds (the column says 秒/s); the server keeps milliseconds for exports. */
const secs = (v) => (v === null || v === undefined ? "—" : String(Math.round(v)));

const catName = (k) => (cfg && cfg.categories.find((c) => c.key === k)?.name) || k;

async function loadNow() {
  const d = await get("/api/dashboard");
  $("now").replaceChildren(stat(t("as.active"), d.incidents.active, d.incidents.active > 0),
    stat(t("as.unacked"), d.incidents.unacknowledged, d.incidents.unacknowledged > 0),
    stat(t("as.open_hazards"), d.hazards.open_total, false));
  $("now").querySelector(".stat:last-child").id = "now-open-hazards";
  $("now-cat").replaceChildren(barChart(Object.entries(d.hazards.by_category).map(([k, v]) => [catName(k), v]), "#ffb020"));
  $("now-sev").replaceChildren(barChart(Object.entries(d.hazards.by_severity).map(([k, v]) => [t("sev." + k), v]), "#ff3b30"));
  $("locations").replaceChildren(table([
    { label: "k.name", left: true, f: (r) => r.name || r.unit_id },
    { label: "k.address", left: true, f: (r) => r.address || "—" },
    { label: "k.coords", f: (r) => (r.lat !== null && r.lat !== undefined ? `${r.lat}, ${r.lon}` : "—") },
    { label: "k.open", f: (r) => r.open }, { label: "k.closed", f: (r) => r.closed },
  ], d.hazards.by_unit));
  await loadHeat();
}

let me = null; // GET /api/me
let heat = null; // {view: offlineMap, layer: the heat layer}

/** The hazard heat map: every unit with hazards in the caller's subtree, weighted by its open hazards, on the
 * offline map; beside it the open/closed totals per station, brigade and city. */
async function loadHeat() {
  const d = await get("/api/hazards/map");
  const placed = d.units.filter(hasPosition);
  if (!heat) {
    const view = offlineMap($("heat-map"), { outlineLabel: t("as.heat") });
    heat = { view, layer: null };
  }
  heat.view.refresh();
  heat.view.setUnits(placed.map((u) => ({ ...u, id: u.unit_id })),
    (u) => ({ state: u.open ? "incident" : "normal", label: `${u.name || u.unit_id} · ${t("as.heat.open")} ${u.open}` }));
  if (heat.layer) heat.view.map.removeLayer(heat.layer);
  const top = Math.max(1, ...placed.map((u) => u.open));
  if (window.L && window.L.heatLayer) {
    heat.layer = window.L.heatLayer(placed.filter((u) => u.open).map((u) => [Number(u.lat), Number(u.lon), u.open / top]),
      { radius: 30, blur: 20, maxZoom: 16 }).addTo(heat.view.map);
  }
  $("heat-orgs").replaceChildren(table([
    { label: "as.org", left: true, f: (r) => r.name },
    { label: "as.level", left: true, f: (r) => t("level." + r.level) },
    { label: "k.open", f: (r) => r.open }, { label: "k.closed", f: (r) => r.closed },
  ], d.organisations));
}

/** The brigade reviewer's queue: documents the stations filed (sealed), with 通过 / 退回 (reason required). */
async function loadReviews() {
  if (!can(me, "review")) return;
  $("review-section").hidden = false;
  const docs = await get(`/api/documents?pending=${$("review-pending").checked}`);
  if (!docs.length) { $("review-list").replaceChildren(h("p.muted", t("as.review.none"))); return; }
  $("review-list").replaceChildren(...docs.map((d) => {
    const note = h("input.review-note", { type: "text", maxLength: 2000, placeholder: t("as.review.note") });
    const send = async (verdict) => {
      try {
        await api("POST", "/api/documents/review", { kind: d.kind, id: d.id, verdict, note: note.value });
        await loadReviews();
      } catch (e) { toast(e.message); }
    };
    const verdict = d.review ? t("as.review." + d.review.verdict) + (d.review.note ? ` · ${d.review.note}` : "") : "";
    return h("div.review-row", { dataset: { kind: d.kind, id: String(d.id) } },
      h("a", { href: d.pdf, target: "_blank", rel: "noopener" }, `${t("doc." + d.kind)} ${d.number || ""}`),
      h("span", ` · ${d.unit_name} · ${fmtTime(d.sealed_at)} `), verdict ? h("span.review-verdict", verdict) : "",
      note, h("button.btn-small.review-ok", { type: "button", onclick: () => send("approved") }, t("as.review.ok")),
      h("button.btn-small.review-return", { type: "button", onclick: () => send("returned") }, t("as.review.return")));
  }));
}

/** Stations and brigades of the caller's subtree ranked by their period score (GET /api/kpi/stations). */
async function loadOrgRanking(q) {
  const d = await get(`/api/kpi/stations?${q}`);
  const cols = [
    { label: "k.rank", f: (r) => r.rank }, { label: "as.org", left: true, f: (r) => r.name },
    { label: "k.score", f: (r) => num(r.score) },
    { label: "as.units_n", f: (r) => r.units },
    { label: "as.stations_n", f: (r) => r.stations.length },
  ];
  $("org-ranking-section").hidden = d.stations.length < 2 && !d.brigades.length;
  $("brigade-ranking").replaceChildren(d.brigades.length ? table(cols, d.brigades) : "");
  $("station-ranking").replaceChildren(table(cols, d.stations));
}

function query() {
  const kind = $("p-kind").value;
  if (kind === "range") return `from=${$("p-from").value}&to=${$("p-to").value}`;
  return `period=${encodeURIComponent($("p-value").value.trim())}`;
}

/** The current period on the server's clock, in the station's time zone (as the server counts periods). */
function defaultValue(kind) {
  const parts = new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai", year: "numeric", month: "2-digit" })
    .formatToParts(new Date(now()));
  const year = parts.find((p) => p.type === "year").value;
  const month = Number(parts.find((p) => p.type === "month").value);
  if (kind === "month") return `${year}-${String(month).padStart(2, "0")}`;
  if (kind === "quarter") return `${year}-Q${Math.floor((month - 1) / 3) + 1}`;
  return year;
}

async function loadKpi() {
  const q = query();
  const k = await get(`/api/kpi?${q}`);
  last = k;
  loadOrgRanking(q).catch((e) => toast(e.message));
  $("x-csv").href = `/api/kpi.csv?${q}`;
  $("x-pdf").href = `/api/kpi/report.pdf?${q}`;
  $("p-label").textContent = k.period;
  const hl = k.headline;
  $("headline").replaceChildren(...["units_inspected", "hazards_found", "notices_issued", "penalty_cases",
    "fires_handled", "alarms", "incidents", "false_alarms"].map((key) => {
    const el = stat(t("as." + key), hl[key]);
    el.dataset.key = key;
    return el;
  }));
  const cols = [
    { label: "k.rank", f: (r) => r.rank ?? "—" }, { label: "k.officer", left: true, f: (r) => r.officer },
    { label: "k.score", f: (r) => num(r.score) }, { label: "k.quality", f: (r) => num(r.quality_score) },
    { label: "k.volume", f: (r) => h("span", { title: r.target_note || "" }, r.volume === null ? t("k.no_target") : pct(r.volume),
      Object.entries(r.volume_targets || {}).map(([m, v]) => h("small.legend", ` ${t("k." + m)} ${v.done}/${v.target}`))) },
    { label: "k.alarms_handled", f: (r) => r.alarms_handled },
    { label: "k.ack", f: (r) => `${secs(r.ack_median_s)} / ${secs(r.ack_p90_s)}` },
    { label: "k.dispatch", f: (r) => `${secs(r.dispatch_median_s)} / ${secs(r.dispatch_p90_s)}` },
    { label: "k.ack_share", f: (r) => pct(r.ack_within_target_share) },
    { label: "k.dispatch_share", f: (r) => pct(r.dispatch_within_target_share) },
    { label: "k.handled_share", f: (r) => pct(r.handled_within_2min_share) },
    { label: "k.escalations", f: (r) => r.escalations }, { label: "k.hazards_found", f: (r) => r.hazards_found },
    { label: "k.inspections", f: (r) => r.inspections },
    { label: "k.notices", f: (r) => r.notices_issued },
    { label: "k.rectified", f: (r) => `${r.rectified_on_time}/${r.notices_due}` },
    { label: "k.rechecks", f: (r) => `${r.rechecks_on_time}/${r.rechecks_done}` },
    { label: "k.penalties", f: (r) => r.penalties },
  ];
  $("ranking").replaceChildren(table(cols, [{ ...k.station, officer: t("as.station") }, ...k.officers]));
  $("units").replaceChildren(table([
    { label: "k.name", left: true, f: (r) => r.name }, { label: "as.alarms", f: (r) => r.alarms },
    { label: "as.incidents", f: (r) => r.incidents }, { label: "k.false_rate", f: (r) => pct(r.false_alarm_rate) },
    { label: "k.faults", f: (r) => r.device_faults }, { label: "k.hazards", f: (r) => r.hazards },
    { label: "k.compliance", f: (r) => pct(r.rectification_compliance) },
  ], k.units));
  const pts = k.trend.points;
  const labels = pts.map((p) => p.bucket);
  $("chart-times").replaceChildren(lineChart(labels, [
    { name: t("k.ack"), color: "#ffb020", values: pts.map((p) => p.ack_median_s) },
    { name: t("k.dispatch"), color: "#4c9dff", values: pts.map((p) => p.dispatch_median_s) }]));
  $("chart-counts").replaceChildren(lineChart(labels, [
    { name: t("as.alarms"), color: "#ff3b30", values: pts.map((p) => p.alarms) },
    { name: t("as.hazards_found"), color: "#2fd07a", values: pts.map((p) => p.hazards) }]));
  $("chart-cat").replaceChildren(barChart(Object.entries(k.hazards_by_category).map(([c, v]) => [catName(c), v])));
}

/** The month the targets list shows: the period's month, or its first month for a quarter/year. */
function targetMonth() {
  const v = $("p-kind").value === "range" ? ($("p-from").value || "").slice(0, 7) : $("p-value").value.trim();
  if (/^\d{4}-\d{2}$/.test(v)) return v;
  if (/^\d{4}-Q[1-4]$/i.test(v)) return `${v.slice(0, 4)}-${String(3 * Number(v.slice(-1)) - 2).padStart(2, "0")}`;
  return /^\d{4}$/.test(v) ? `${v}-01` : defaultValue("month");
}

async function loadTargets() {
  const month = targetMonth();
  if (!$("t-month").value) $("t-month").value = month;
  const rows = await get(`/api/kpi/targets?month=${encodeURIComponent($("t-month").value || month)}`);
  $("targets").replaceChildren(rows.length ? table([
    { label: "as.t.month", f: (r) => r.month },
    { label: "k.officer", left: true, f: (r) => (r.scope === "station" ? t("as.station") : r.officer === "*" ? t("as.t.every") : r.officer) },
    { label: "as.t.metric", left: true, f: (r) => t("k." + r.metric) }, { label: "as.t.target", f: (r) => r.target },
    { label: "as.t.set", f: (r) => `${fmtTime(r.set_at)} · ${r.set_by}` },
  ], rows) : h("p.legend", t("as.t.none")));
}

async function saveTarget(remove) {
  const station = $("t-scope").value === "station";
  const target = remove ? null : Number($("t-target").value);
  if (!remove && !(target >= 1)) throw new Error(t("as.t.target_needed"));
  await api("PUT", "/api/kpi/targets", { month: $("t-month").value.trim(), scope: $("t-scope").value,
    officer: station ? "" : $("t-officer").value.trim(), metric: $("t-metric").value, target });
  toast(t("as.t.saved"), "info");
  await loadTargets();
  if (last) await loadKpi();
}

async function search() {
  const q = encodeURIComponent($("s-q").value.trim());
  const r = await get(`/api/search?type=${$("s-type").value}&q=${q}&status=all&${query()}`);
  const inc = r.incidents.map((i) => ({ kind: "incident", id: i.id, unit: i.unit_name, what: t("kind." + i.kind),
    status: t("status." + i.status), at: i.opened_at }));
  const hz = r.hazards.map((x) => ({ kind: "hazard", id: x.id, unit: x.unit.name, what: x.category_name,
    status: t("hst." + x.status), at: x.found_at }));
  $("results").replaceChildren(table([
    { label: "k.kind", left: true, f: (x) => (x.kind === "incident" ? t("as.type.incidents") : t("as.type.hazards")) + ` #${x.id}` },
    { label: "k.name", left: true, f: (x) => x.unit }, { label: "hz.category", left: true, f: (x) => x.what },
    { label: "k.status", f: (x) => x.status }, { label: "k.time", f: (x) => fmtTime(x.at) },
  ], [...inc, ...hz], (x) => openCase(x.kind, x.id)));
}

async function openCase(kind, id) {
  const c = await get(kind === "incident" ? `/api/incidents/${id}` : `/api/hazards/${id}`);
  const box = $("case");
  const evidence = kind === "hazard" ? h("div.gallery", c.evidence.map((e) => h("figure",
    h("a", { href: e.url, target: "_blank" }, h("img", { src: e.url, alt: e.filename })),
    h("figcaption", `${t("ev." + e.stage)} · ${e.sha256.slice(0, 12)}`)))) : await incidentEvidence(id);
  const docs = kind === "hazard" ? h("div.row", c.notices.map((n) => h("a.btn.btn-small", { href: n.pdf, target: "_blank" }, n.number)),
    c.penalties.filter((p) => p.pdf).map((p) => h("a.btn.btn-small", { href: p.pdf, target: "_blank" }, p.number))) : null;
  const times = kind === "incident" ? h("p#case-times", Object.entries(c.response_times)
    .map(([k2, v]) => `${t("times." + k2)} ${fmtSeconds(v)}`).join(" · ")) : null;
  // (null parts are left out: replaceChildren would print them as "null")
  box.replaceChildren(...[h("h2#case-title", `${t("as.case")} · ${kind === "incident" ? t("as.type.incidents") : t("as.type.hazards")} #${id} · ${c.unit.name}`),
    times, docs, evidence,
    h("ol#case-timeline.tl", c.timeline.map((e) => h("li", { dataset: { action: e.action } }, h("span.at", fmtTime(e.at)),
      t("tl." + e.action), " · ", e.actor, e.action.startsWith("call.") ? ` · ${callDetail(e.action, e.data || {})}` : "",
      h("span.legend", ` ${e.hash.slice(0, 10)}`))))].filter(Boolean));
  box.hidden = false;
  box.scrollIntoView({ behavior: "smooth" });
}

/** An incident's evidence (camera clips and snapshots, phone photos, call recordings with sound) to play. */
async function incidentEvidence(id) {
  let files = [];
  try { files = (await get(`/api/incidents/${id}/evidence`)).files || []; } catch { return null; }
  if (!files.length) return null;
  return h("div.gallery#case-evidence", files.map((f) => h("figure", { dataset: { evidenceKind: f.kind, file: f.file } },
    f.kind === "call" || f.kind === "clip"
      ? h("video", { src: f.url, controls: true, preload: "metadata", playsinline: true, muted: f.kind === "clip" })
      : h("a", { href: f.url, target: "_blank" }, h("img", { src: f.url, alt: f.file })),
    h("figcaption", `${t("evidence.kind." + f.kind)} · ${f.sha256.slice(0, 12)}`))));
}

async function main() {
  applyI18n(document);
  bindLangToggle($("lang"));
  $("logout").onclick = logout;
  const paintWho = () => { $("who").textContent = `${me.user.username} · ${t("role." + me.user.role)}`; };
  const ready = (async () => {
    me = await loadMe();
    startAlerts(me, { page: "assessor" });
    paintWho();
    cfg = await get("/api/hazards/config");
    if (!$("p-value").value.trim()) $("p-value").value = defaultValue($("p-kind").value);
    $("target-form").hidden = !can(me, "targets");  // a station chief or admin sets targets (the server checks too)
    return true;
  })().catch((err) => { toast(err.message); return false; });
  // Every control is bound before anything is awaited, so the first query (or click) after the page loads is never
  // lost (nor a form's native submission reloading the page): each waits for the page's data, then acts.
  const act = (fn) => ready.then((ok) => (ok ? fn() : null)).catch((err) => toast(err.message));
  $("review-pending").onchange = () => act(loadReviews);
  $("p-kind").onchange = () => {
    const range = $("p-kind").value === "range";
    $("p-value").hidden = range; $("p-from").hidden = !range; $("p-to").hidden = !range;
    if (!range) $("p-value").value = defaultValue($("p-kind").value);
  };
  $("period-form").addEventListener("submit", (e) => {
    e.preventDefault();
    $("t-month").value = targetMonth();
    act(loadKpi);
    act(loadTargets);
  });
  $("t-scope").onchange = () => { $("t-officer").disabled = $("t-scope").value === "station"; };
  $("t-month").onchange = () => act(loadTargets);
  $("target-form").addEventListener("submit", (e) => { e.preventDefault(); act(() => saveTarget(false)); });
  $("t-remove").onclick = () => act(() => saveTarget(true));
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); act(search); });
  if (!(await ready)) return;
  onLangChange(() => { applyI18n(document); paintWho(); loadNow(); loadTargets(); if (last) loadKpi(); });
  await Promise.all([loadNow(), loadKpi(), loadTargets(), loadReviews()]);
  setInterval(() => loadNow().catch(() => {}), 15000);
}

main().catch((err) => toast(err.message));
