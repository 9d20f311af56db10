// Zone editor of the focused camera on the video page, in two modes: exit zones (安全出口) and smoke/fire detection
// masks (屏蔽区域: a stove, a lit sign — detections inside are ignored).
//
// A fresh snapshot of the camera; exit zones drawn over it in distinct colours, masks hatched grey; click the corners
// to draw a new outline (Enter, double-click or “Finish” closes it, Esc cancels, Backspace undoes a point), then name
// (and, for an exit, dwell minutes and minimum blocked share), and Save (PUT). Each console outline can be edited or
// deleted; an exit zone can also be given its “clear” reference: the camera's current frame, after the officer
// confirms the exit is clear now (masks need none). Outlines from the config file are shown read-only. The assessor
// sees them only. Running detectors take changes at once; `exit_zone.applied` / `detector_mask.applied` say so.
// Coordinates are fractions (0..1) of the picture, as the detectors use them.

import "./zones_i18n.js";
import { onLangChange, t } from "./i18n.js";
import { api, fmtTime, h, post, serialised, svg, toast } from "./common.js";

const COLORS = ["#ff5252", "#40c4ff", "#69f0ae", "#ffd740", "#e040fb", "#ff9100", "#b2ff59", "#f8bbd0"];
const MASK_GREY = "#cfd8dc";
const SNAP_WIDTH = 1280;
const NEAR_PX = 6; // a click this close to the last point is the second click of a double-click, not a point

// The two kinds of outline: API path, list key, new-id prefix, live events, ids in the `applied` event, UI strings.
const KINDS = {
  exit: { path: "exit-zones", list: "zones", prefix: "exit", changed: "exit_zone.changed",
    applied: "exit_zone.applied", ids: "zone_ids", s: "zone" },
  mask: { path: "masks", list: "masks", prefix: "mask", changed: "detector_mask.changed",
    applied: "detector_mask.applied", ids: "mask_ids", s: "mask" },
};

const $ = (id) => document.getElementById(id);
const z = {
  cam: null, canEdit: false, mode: "exit", regions: { exit: [], mask: [] }, draft: null, editing: null, size: null,
  applied: { exit: null, mask: null }, confirm: null, snapUrl: null,
};

const listUrl = (cam, kind) => `/api/cameras/${encodeURIComponent(cam)}/${KINDS[kind].path}`;
const itemUrl = (cam, kind, id, rest = "") => `${listUrl(cam, kind)}/${encodeURIComponent(id)}${rest}`;
const reload = serialised(loadZones);
const current = () => z.regions[z.mode];
/** The mode's own string when it has one (mask.*), else the shared zone.* one. */
const tm = (key, vars) => {
  const own = `${KINDS[z.mode].s}.${key}`;
  return t(t(own) === own ? `zone.${key}` : own, vars);
};

/** Wires the editor's controls once; `canEdit` for officers (admin, duty officer). */
export function setupZones({ canEdit }) {
  z.canEdit = canEdit;
  $("zones-open").hidden = false;
  $("zones-close").addEventListener("click", () => closeZones(true));
  $("zone-refresh").addEventListener("click", loadSnapshot);
  const stage = $("zone-stage");
  stage.addEventListener("click", onStageClick);
  stage.addEventListener("dblclick", (e) => { e.preventDefault(); finishDraft(); });
  $("zone-finish").addEventListener("click", finishDraft);
  $("zone-undo").addEventListener("click", undoPoint);
  $("zone-cancel").addEventListener("click", cancelDraft);
  $("zone-form").addEventListener("submit", (e) => { e.preventDefault(); saveDraft(); });
  $("zone-form").hidden = !canEdit;
  for (const btn of document.querySelectorAll("#zone-modes [data-mode]")) {
    btn.addEventListener("click", () => setMode(btn.dataset.mode));
  }
  onLangChange(() => { if (z.cam) render(); });
}

/** Exit zones or masks: what the list, the form and new drawings are about (a drawing in progress is dropped). */
function setMode(mode) {
  if (!KINDS[mode] || mode === z.mode) return;
  z.mode = mode;
  resetDraft();
  render();
}

/** Shows the editor for a camera in place of its live view (the caller stops the live stream). */
export async function openZones(cam) {
  z.cam = cam;
  z.regions = { exit: [], mask: [] };
  z.applied = { exit: null, mask: null };
  resetDraft();
  document.body.classList.add("zones-on");
  $("zones").hidden = false;
  $("zones").dataset.cameraId = cam;
  render();
  await Promise.all([loadSnapshot(), reload()]);
}

/** Hides the editor; `back` tells the page to return to the live view. */
export function closeZones(back = false) {
  if (!z.cam) return;
  z.cam = null;
  resetDraft();
  $("zones").hidden = true;
  delete $("zones").dataset.cameraId;
  document.body.classList.remove("zones-on");
  if (z.snapUrl) { URL.revokeObjectURL(z.snapUrl); z.snapUrl = null; }
  z.size = null;
  $("zone-snap").removeAttribute("src");
  delete $("zone-stage").dataset.ready;
  if (back) document.dispatchEvent(new CustomEvent("zones-closed"));
}

/** Live events: another screen changed this camera's zones or masks, or the detectors took them. */
export function zonesOnEvent(ev) {
  if (!z.cam || ev.camera_id !== z.cam) return;
  for (const [kind, k] of Object.entries(KINDS)) {
    if (ev.type === k.changed) reload();
    else if (ev.type === k.applied) { z.applied[kind] = ev; renderList(); }
  }
}

/** Keys while the editor is open; true when the key was the editor's (the page then ignores it). */
export function zonesOnKey(e) {
  if (!z.cam) return false;
  const typing = /^(INPUT|TEXTAREA|SELECT)$/.test(e.target?.tagName || "");
  if (e.key === "Escape") {
    e.preventDefault();
    if (z.confirm) { z.confirm = null; renderList(); } else if (z.draft) cancelDraft(); else closeZones(true);
    return true;
  }
  if (typing || !z.draft || z.draft.closed) return false;
  if (e.key === "Enter") { e.preventDefault(); finishDraft(); return true; }
  if (e.key === "Backspace") { e.preventDefault(); undoPoint(); return true; }
  return false;
}

// ------------------------------------------------------------------ data

async function loadSnapshot() {
  const cam = z.cam;
  const img = $("zone-snap");
  $("zone-stage").classList.add("loading");
  try {
    const resp = await fetch(`/api/cameras/${encodeURIComponent(cam)}/snapshot.jpg?w=${SNAP_WIDTH}`,
      { credentials: "same-origin", cache: "no-store" });
    if (!resp.ok) throw new Error(t("zone.nosnap"));
    const url = URL.createObjectURL(await resp.blob());
    if (cam !== z.cam) { URL.revokeObjectURL(url); return; }
    await new Promise((resolve, reject) => { img.onload = resolve; img.onerror = reject; img.src = url; });
    if (cam !== z.cam) { URL.revokeObjectURL(url); return; } // closed meanwhile
    if (z.snapUrl) URL.revokeObjectURL(z.snapUrl);
    z.snapUrl = url;
    z.size = { w: img.naturalWidth, h: img.naturalHeight };
    $("zone-stage").style.setProperty("--ar", String(z.size.w / z.size.h));
    $("zone-stage").dataset.ready = "1";
  } catch (err) {
    toast(err.message || t("zone.nosnap"));
  } finally {
    $("zone-stage").classList.remove("loading");
    renderShapes();
  }
}

async function loadZones() {
  const cam = z.cam;
  if (!cam) return;
  const kinds = Object.keys(KINDS);
  const bodies = await Promise.all(kinds.map((kind) => api("GET", listUrl(cam, kind))));
  if (cam !== z.cam) return;
  kinds.forEach((kind, i) => { z.regions[kind] = bodies[i][KINDS[kind].list] || []; });
  render();
}

async function act(fn, done) {
  try {
    await fn();
    if (done) toast(t(done), "info");
  } catch (err) {
    toast(`${t("error.generic")}: ${err.message}`);
  }
  z.confirm = null;
  await reload();
}

// ------------------------------------------------------------------ drawing

function resetDraft() {
  z.draft = null;
  z.editing = null;
  z.confirm = null;
  $("zone-name").value = "";
  $("zone-dwell").value = "10";
  $("zone-fraction").value = "25";
}

function onStageClick(e) {
  if (!z.canEdit || !z.size || (z.draft && z.draft.closed)) return;
  const box = $("zone-stage").getBoundingClientRect();
  const px = [e.clientX - box.left, e.clientY - box.top];
  const clamp = (v) => Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
  const point = [clamp(px[0] / box.width), clamp(px[1] / box.height)];
  if (!z.draft) z.draft = { points: [], closed: false };
  const last = z.draft.points[z.draft.points.length - 1];
  if (last && Math.hypot((last[0] - point[0]) * box.width, (last[1] - point[1]) * box.height) < NEAR_PX) return;
  z.draft.points.push(point);
  render();
}

function finishDraft() {
  if (!z.draft || z.draft.closed) return;
  if (z.draft.points.length < 3) { toast(t("zone.need3")); return; }
  z.draft.closed = true;
  render();
  $("zone-name").focus();
}

/** Removes the last point; on a closed outline it reopens it first (to reshape a zone being edited). */
function undoPoint() {
  if (!z.draft) return;
  if (z.draft.closed) { z.draft.closed = false; render(); return; }
  z.draft.points.pop();
  if (!z.draft.points.length) z.draft = null;
  render();
}

function cancelDraft() {
  resetDraft();
  render();
}

function nextId() {
  const prefix = KINDS[z.mode].prefix;
  const taken = new Set(current().map((x) => x.id));
  let n = 1;
  while (taken.has(`${prefix}-${n}`)) n += 1;
  return [`${prefix}-${n}`, n];
}

function saveDraft() {
  if (!z.draft || !z.draft.closed) return;
  const [fresh, n] = nextId();
  const id = z.editing || fresh;
  const kind = z.mode;
  const body = { name: $("zone-name").value.trim() || tm("default_name", { n }), polygon: z.draft.points };
  if (kind === "exit") {
    body.dwell_s = Math.round(Number($("zone-dwell").value) * 60 * 10) / 10;
    body.min_fraction = Number($("zone-fraction").value) / 100;
    body.clear_s = current().find((x) => x.id === id)?.clear_s ?? 30;
  }
  const cam = z.cam;
  act(async () => { await api("PUT", itemUrl(cam, kind, id), body); resetDraft(); }, "zone.saved");
}

function editZone(zone) {
  z.draft = { points: zone.polygon.map((p) => [p[0], p[1]]), closed: true };
  z.editing = zone.id;
  $("zone-name").value = zone.name;
  if (z.mode === "exit") {
    $("zone-dwell").value = String(Math.round((zone.dwell_s / 60) * 100) / 100);
    $("zone-fraction").value = String(Math.round(zone.min_fraction * 1000) / 10);
  }
  render();
}

// ------------------------------------------------------------------ render

function render() {
  renderShapes();
  renderForm();
  renderList();
}

function hint() {
  if (!z.canEdit) return tm("hint.readonly");
  if (!z.draft) return tm("hint.idle");
  return z.draft.closed ? tm("hint.closed") : tm("hint.drawing", { n: z.draft.points.length });
}


/** Hatching for masks, in the picture's pixels (a stripe every ~1/60 of its width). */
function hatch(w) {
  const step = Math.max(6, Math.round(w / 60));
  const pattern = svg("pattern", { id: "zone-hatch", patternUnits: "userSpaceOnUse", width: step, height: step,
    patternTransform: "rotate(45)" });
  pattern.append(svg("rect", { width: step, height: step, fill: MASK_GREY, "fill-opacity": 0.3 }),
    svg("line", { x1: 0, y1: 0, x2: 0, y2: step, stroke: MASK_GREY, "stroke-width": step / 2.5, "stroke-opacity": 0.8 }));
  const defs = svg("defs", {});
  defs.append(pattern);
  return defs;
}

/** Exit zones, masks and the draft over the snapshot; drawn in the picture's pixels so circles stay round. The mode's
 * own kind is drawn on top, the other kind dimmed. */
function renderShapes() {
  const layer = $("zone-svg");
  $("zone-hint").textContent = hint();
  $("zone-stage").classList.toggle("drawing", z.canEdit && !(z.draft && z.draft.closed));
  if (!z.size) { layer.replaceChildren(); return; }
  const w = z.size.w;
  const hgt = z.size.h;
  layer.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  const pts = (poly) => poly.map(([x, y]) => `${(x * w).toFixed(1)},${(y * hgt).toFixed(1)}`).join(" ");
  const items = [hatch(w)];
  const label = (zone, color) => {
    const c = centroid(zone.polygon);
    return svg("text", { x: c[0] * w, y: c[1] * hgt, fill: color, "font-size": Math.round(w / 40),
      "text-anchor": "middle", "dominant-baseline": "middle", class: "zone-label" }, zone.name || zone.id);
  };
  const layers = { exit: [], mask: [] };
  z.regions.exit.forEach((zone, i) => {
    if (z.mode === "exit" && zone.id === z.editing) return;
    const color = COLORS[i % COLORS.length];
    layers.exit.push(svg("polygon", { points: pts(zone.polygon), fill: color, "fill-opacity": 0.22, stroke: color,
      "stroke-width": 3, "vector-effect": "non-scaling-stroke", "data-zone-id": zone.id }), label(zone, color));
  });
  for (const mask of z.regions.mask) {
    if (z.mode === "mask" && mask.id === z.editing) continue;
    layers.mask.push(svg("polygon", { points: pts(mask.polygon), fill: "url(#zone-hatch)", stroke: MASK_GREY,
      "stroke-width": 2, "stroke-dasharray": "6 4", "vector-effect": "non-scaling-stroke", class: "zone-mask",
      "data-mask-id": mask.id }), label({ ...mask, name: maskName(mask) }, MASK_GREY));
  }
  const other = z.mode === "exit" ? "mask" : "exit";
  const dimmed = svg("g", { class: "zone-other" });
  dimmed.append(...layers[other]);
  items.push(dimmed, ...layers[z.mode]);
  if (z.draft) {
    const d = z.draft;
    const shape = d.closed ? "polygon" : "polyline";
    items.push(svg(shape, { points: pts(d.points), fill: d.closed ? "#ffffff" : "none", "fill-opacity": 0.25,
      stroke: "#ffffff", "stroke-width": 3, "stroke-dasharray": d.closed ? "" : "8 5",
      "vector-effect": "non-scaling-stroke", id: "zone-draft" }));
    for (const [x, y] of d.points) {
      items.push(svg("circle", { cx: x * w, cy: y * hgt, r: Math.max(4, w / 160), fill: "#ffb020",
        stroke: "#000", "stroke-width": 1.5, "vector-effect": "non-scaling-stroke", class: "zone-point" }));
    }
  }
  layer.replaceChildren(...items);
}

function centroid(poly) {
  const n = poly.length;
  return [poly.reduce((s, p) => s + p[0], 0) / n, poly.reduce((s, p) => s + p[1], 0) / n];
}

function renderForm() {
  if (!z.canEdit) return;
  const drawing = !!z.draft && !z.draft.closed;
  $("zone-form-title").textContent = z.editing ? tm("editing", { id: z.editing }) : tm("new");
  $("zone-name").placeholder = tm("name.ph");
  const exitFields = $("zone-exit-fields");
  exitFields.hidden = exitFields.disabled = z.mode !== "exit"; // disabled: not validated while hidden
  $("zone-finish").disabled = !drawing || z.draft.points.length < 3;
  $("zone-undo").disabled = !z.draft;
  $("zone-cancel").disabled = !z.draft;
  $("zone-save").disabled = !(z.draft && z.draft.closed);
}

function renderModes() {
  for (const btn of document.querySelectorAll("#zone-modes [data-mode]")) {
    btn.setAttribute("aria-pressed", String(btn.dataset.mode === z.mode));
  }
  $("zones").dataset.mode = z.mode;
}

function renderList() {
  renderModes();
  const list = $("zone-list");
  const items = current();
  if (!items.length) { list.replaceChildren(h("li.empty", tm("none"))); return; }
  list.replaceChildren(...items.map((zone, i) => (z.mode === "exit"
    ? zoneItem(zone, COLORS[i % COLORS.length]) : maskItem(zone))));
}

function refText(zone) {
  if (zone.source === "config") return zone.reference ? t("zone.ref.config") : t("zone.ref.none");
  const r = zone.reference;
  return r ? t("zone.ref.at", { at: fmtTime(r.captured_at), by: r.captured_by }) : t("zone.ref.none");
}

function appliedBadge(zone) {
  const a = z.applied[z.mode];
  if (!a) return null;
  if (!a.watched) return h("span.zone-badge.warn", t("zone.unwatched"));
  return (a[KINDS[z.mode].ids] || []).includes(zone.id) ? h("span.zone-badge.ok", t("zone.applied")) : null;
}

function zoneItem(zone, color) {
  const meta = t("zone.meta", { id: zone.id, dwell: Math.round((zone.dwell_s / 60) * 100) / 100,
    pct: Math.round(zone.min_fraction * 1000) / 10 });
  const item = h("li.zone-item", { dataset: { zoneId: zone.id, source: zone.source } },
    h("span.zone-swatch", { style: `background:${color}` }),
    h("div.zone-info",
      h("strong.zone-name", zone.name || zone.id),
      h("span.zone-meta", meta),
      h("span.zone-ref", { dataset: { has: zone.reference ? "1" : "0" } }, refText(zone)),
      zone.source === "config" ? h("span.zone-badge", t("zone.source.config")) : null,
      zone.overrides_config ? h("span.zone-badge", t("zone.overrides")) : null,
      appliedBadge(zone)));
  if (z.canEdit && !zone.read_only) item.append(zoneActions(zone));
  return item;
}

/** The config file's masks have no name: "configuration file mask 1". */
function maskName(mask) {
  if (mask.name) return mask.name;
  return mask.source === "config" ? t("mask.config_name", { n: mask.id.replace(/^config:/, "") }) : mask.id;
}

function maskItem(mask) {
  const item = h("li.zone-item", { dataset: { zoneId: mask.id, source: mask.source, kind: "mask" } },
    h("span.zone-swatch.mask"),
    h("div.zone-info",
      h("strong.zone-name", maskName(mask)),
      h("span.zone-meta", t("mask.meta", { id: mask.id })),
      mask.source === "config" ? h("span.zone-badge", t("zone.source.config")) : null,
      appliedBadge(mask)));
  if (z.canEdit && !mask.read_only) item.append(zoneActions(mask));
  return item;
}

function zoneActions(zone) {
  const cam = z.cam;
  const kind = z.mode;
  const c = z.confirm;
  if (c && c.id === zone.id) {
    const yes = c.kind === "capture"
      ? h("button.btn.zone-yes.zone-yes-capture", { type: "button", onclick: () => act(
        () => post(itemUrl(cam, kind, zone.id, "/reference"), { confirm_clear: true }), "zone.captured") },
      t("zone.capture.yes"))
      : h("button.btn.zone-yes.zone-yes-delete", { type: "button", onclick: () => act(
        () => api("DELETE", itemUrl(cam, kind, zone.id)), "zone.deleted") }, t("zone.delete.yes"));
    const text = c.kind === "capture" ? t("zone.capture.confirm") : t("zone.delete.confirm", { name: zone.name || zone.id });
    return h("div.zone-confirm", h("p", text), h("div.zone-buttons", yes,
      h("button.btn.zone-no", { type: "button", onclick: () => { z.confirm = null; renderList(); } }, t("zone.no"))));
  }
  const ask = (kind) => () => { z.confirm = { id: zone.id, kind }; renderList(); };
  return h("div.zone-buttons",
    kind === "exit" ? h("button.btn.zone-capture", { type: "button", onclick: ask("capture") }, t("zone.capture"))
      : null,
    h("button.btn.zone-edit", { type: "button", onclick: () => editZone(zone) }, t("zone.edit")),
    h("button.btn.zone-delete", { type: "button", onclick: ask("delete") }, t("zone.delete")));
}
