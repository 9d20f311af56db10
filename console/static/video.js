// Video wall for video patrol (视频巡查): every camera the user may see, paged, live tiles at small width;
// click a tile for the focused view (live MJPEG at full resolution) with a snapshot button and, for staff, the
// camera's exit zones and detection masks (安全出口 / 屏蔽区域, zones.js) drawn on a snapshot. Camera status follows
// the live WebSocket's `device.updated` events of kind "camera".
//
// Tiles take their frames from live.ws (one JPEG per message) rather than MJPEG <img>: the browser allows
// only 6 HTTP/1.1 connections per host, so 9 endless MJPEG responses would starve each other and every
// API call of the page; WebSockets do not count against that limit.

import { applyI18n, bindLangToggle, onLangChange, t } from "./i18n.js";
import { connectLive, get, h, homeFor, loadMe, logout, post, toast } from "./common.js";
import { startAlerts } from "./alerts.js";
import { closeZones, openZones, setupZones, zonesOnEvent, zonesOnKey } from "./zones.js";

const PER_PAGE = 9;
const TILE_Q = "w=480&fps=5";
const FAULTS = new Set(["offline", "frozen", "dark"]);
const RETRY_MS = 5000;

const $ = (id) => document.getElementById(id);
const state = { me: null, cams: [], units: new Map(), page: 0, focused: null };

const camUrl = (id, rest) => `/api/cameras/${encodeURIComponent(id)}/${rest}`;

async function boot() {
  applyI18n(document);
  bindLangToggle($("lang"));
  $("logout").addEventListener("click", logout);  // before anything is awaited: the first click is never lost
  state.me = await loadMe();
  const role = state.me.user.role;
  if (role === "agency") return location.replace(homeFor(role));
  startAlerts(state.me, { page: "video" });
  $("nav-home").href = homeFor(role);
  $("who").textContent = `${state.me.user.username} · ${t("role." + role)}`;
  $("page-prev").addEventListener("click", () => setPage(state.page - 1));
  $("page-next").addEventListener("click", () => setPage(state.page + 1));
  $("focus-back").addEventListener("click", () => unfocus());
  $("focus-snap").addEventListener("click", snapshot);
  if (role === "admin" || role === "duty_officer") setupPatrol();
  if (role !== "unit") setupZoneEditor(role === "admin" || role === "duty_officer");
  document.addEventListener("keydown", onKey);
  window.addEventListener("hashchange", fromHash);
  onLangChange(() => { $("who").textContent = `${state.me.user.username} · ${t("role." + role)}`; renderWall(); });
  await loadCameras();
  fromHash();
  connectLive({ onEvent, onOpen: loadCameras });
}

async function loadCameras() {
  try {
    const [body, units] = await Promise.all([get("/api/cameras"), get("/api/units").catch(() => [])]);
    state.units = new Map((units || []).map((u) => [u.id, u]));
    state.cams = (body.cameras || []).slice().sort((a, b) =>
      (a.unit_id + "\u0000" + a.name).localeCompare(b.unit_id + "\u0000" + b.name, "zh"));
  } catch (err) {
    state.cams = [];
    if (err.status !== 503) toast(err.message);
  }
  renderWall();
}

const pages = () => Math.max(1, Math.ceil(state.cams.length / PER_PAGE));

function setPage(p) {
  const next = Math.max(0, Math.min(pages() - 1, p));
  if (next === state.page) return;
  state.page = next;
  renderWall(true);
}

function onKey(e) {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (zonesOnKey(e)) return;
  if (e.key === "Escape" && state.focused) { e.preventDefault(); unfocus(); return; }
  if (state.focused) return;
  if (e.key === "ArrowRight" || e.key === "PageDown") { e.preventDefault(); setPage(state.page + 1); }
  else if (e.key === "ArrowLeft" || e.key === "PageUp") { e.preventDefault(); setPage(state.page - 1); }
}

function onEvent(ev) {
  if (ev.type === "resync") { loadCameras(); return; }
  zonesOnEvent(ev);
  if (ev.type !== "device.updated" || ev.kind !== "camera" || !ev.camera) return;
  const cam = ev.camera;
  const i = state.cams.findIndex((c) => c.id === cam.id);
  if (i < 0) { loadCameras(); return; } // a camera we did not know: the list changed
  const was = state.cams[i].status;
  state.cams[i] = { ...state.cams[i], ...cam };
  const tile = document.querySelector(`#wall [data-camera-id="${CSS.escape(cam.id)}"]`);
  if (tile) {
    paintBadge(tile.querySelector(".cam-badge"), state.cams[i]);
    tile.dataset.status = cam.status;
    tile.classList.toggle("fault", FAULTS.has(cam.status));
    // Back online after a fault: a stream that ended meanwhile starts again at once.
    if (cam.status === "online" && was !== "online") restartImg(tile.querySelector("img.live"));
  }
  if (state.focused === cam.id) {
    paintBadge($("focus-status"), state.cams[i]);
    if (cam.status === "online" && was !== "online") restartImg($("focus-img"));
  }
}

// ------------------------------------------------------------------ live images

/** Stops a live <img>: its WebSocket player, or its MJPEG request (Chromium aborts it when the src goes). */
function stopImg(img) {
  if (!img) return;
  clearTimeout(img._retry);
  if (img._player) { img._player.stop(); img._player = null; }
  img.onerror = null;
  img.removeAttribute("src");
}

/** Shows live.ws frames in an <img> (blob URLs, the previous one revoked); reconnects after RETRY_MS. */
function playWs(img, camId) {
  const holder = () => img.closest("[data-camera-id]");
  let ws = null;
  let shown = null;
  let stopped = false;
  let frames = 0;
  const open = () => {
    clearTimeout(img._retry);
    const proto = location.protocol === "https:" ? "wss://" : "ws://";
    ws = new WebSocket(proto + location.host + camUrl(camId, `live.ws?${TILE_Q}`));
    ws.binaryType = "blob";
    ws.onmessage = (m) => {
      if (stopped || !(m.data instanceof Blob)) return;
      const url = URL.createObjectURL(m.data);
      img.src = url;
      if (shown) URL.revokeObjectURL(shown);
      shown = url;
      frames += 1;
      const tile = holder();
      if (tile) { tile.classList.remove("no-video"); tile.dataset.frames = String(frames); }
    };
    ws.onclose = () => {
      if (stopped) return;
      holder()?.classList.add("no-video");
      img._retry = setTimeout(() => { if (!stopped && img.isConnected) open(); }, RETRY_MS);
    };
  };
  open();
  return {
    stop() {
      stopped = true;
      clearTimeout(img._retry);
      if (ws) { ws.onclose = null; ws.close(); }
      if (shown) URL.revokeObjectURL(shown);
      shown = null;
    },
    restart() { if (!ws || ws.readyState > 1) open(); },
  };
}

function startImg(img, url) {
  img.dataset.url = url;
  img.onerror = () => {
    img.closest("[data-camera-id], .focus-view")?.classList.add("no-video");
    clearTimeout(img._retry);
    img._retry = setTimeout(() => { if (img.isConnected) restartImg(img); }, RETRY_MS);
  };
  img.onload = () => img.closest("[data-camera-id], .focus-view")?.classList.remove("no-video");
  img.src = url;
}

function restartImg(img) {
  if (img && img._player) { img._player.restart(); return; }
  if (!img || !img.dataset.url) return;
  const url = img.dataset.url.replace(/([?&])_=\d+&?/, "$1").replace(/[?&]$/, "");
  stopImg(img);
  startImg(img, url + (url.includes("?") ? "&" : "?") + "_=" + Date.now());
}

function stopAll(root) { for (const img of root.querySelectorAll("img.live")) stopImg(img); }

// ------------------------------------------------------------------ render

function paintBadge(el, cam) {
  if (!el) return;
  el.dataset.status = cam.status;
  el.classList.toggle("bad", FAULTS.has(cam.status));
  el.textContent = t("cam.status." + cam.status) + (cam.fault && FAULTS.has(cam.status) ? ` · ${cam.fault}` : "")
    + (cam.status === "standby" && cam.watched_by ? ` · ${cam.watched_by}` : "");
  el.title = cam.fault || "";
}

function unitName(cam) { return state.units.get(cam.unit_id)?.name || cam.unit_id; }

let shownKey = "";
function renderWall(force = false) {
  applyI18n(document);
  state.page = Math.min(state.page, pages() - 1);
  const n = state.cams.length;
  $("wall-count").textContent = t("wall.count", { n });
  $("page-label").textContent = t("wall.page", { p: state.page + 1, n: pages() });
  $("page-prev").disabled = state.page === 0;
  $("page-next").disabled = state.page >= pages() - 1;
  $("wall-empty").hidden = n > 0;
  const slice = state.cams.slice(state.page * PER_PAGE, (state.page + 1) * PER_PAGE);
  const key = slice.map((c) => c.id).join("|") + "#" + (state.focused ? "f" : "w");
  const wall = $("wall");
  if (!force && key === shownKey) { // same tiles: repaint the labels only, keep the streams running
    for (const cam of slice) {
      const tile = wall.querySelector(`[data-camera-id="${CSS.escape(cam.id)}"]`);
      if (tile) paintBadge(tile.querySelector(".cam-badge"), cam);
    }
    return;
  }
  shownKey = key;
  stopAll(wall);
  wall.dataset.count = String(slice.length);
  wall.dataset.page = String(state.page);
  if (state.focused) { wall.replaceChildren(); return; } // the focused view is the only stream then
  wall.replaceChildren(...slice.map((cam) => {
    const img = h("img.live", { alt: cam.name || cam.id });
    const badge = h("span.cam-badge");
    paintBadge(badge, cam);
    const tile = h("figure.tile", {
      dataset: { cameraId: cam.id, status: cam.status },
      class: FAULTS.has(cam.status) ? "fault" : "",
      tabindex: "0", role: "button", title: cam.name,
      onclick: () => focus(cam.id),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); focus(cam.id); } },
    },
    h("div.tile-view", img, h("span.tile-none", t("video.offline"))),
    h("figcaption",
      h("span.tile-name", cam.name || cam.id), badge,
      h("span.tile-meta", [unitName(cam), cam.location].filter(Boolean).join(" · "))));
    img._player = playWs(img, cam.id);
    return tile;
  }));
}

// ------------------------------------------------------------------ focused view

function fromHash() {
  const m = location.hash.match(/^#cam\/(.+)$/);
  const id = m ? decodeURIComponent(m[1]) : null;
  if (id && state.cams.some((c) => c.id === id)) { if (state.focused !== id) focus(id); }
  else if (state.focused) unfocus();
}

function focus(id) {
  const cam = state.cams.find((c) => c.id === id);
  if (!cam) return;
  closeZones();
  state.focused = id;
  if (location.hash !== `#cam/${encodeURIComponent(id)}`) history.replaceState(null, "", `#cam/${encodeURIComponent(id)}`);
  renderWall(); // stops the tiles' streams
  $("focus").hidden = false;
  $("focus").dataset.cameraId = id;
  $("focus-title").textContent = [cam.name || cam.id, unitName(cam), cam.location].filter(Boolean).join(" · ");
  paintBadge($("focus-status"), cam);
  $("snaps").replaceChildren();
  const img = $("focus-img");
  img.classList.add("live");
  img.alt = cam.name || cam.id;
  stopImg(img);
  startImg(img, camUrl(id, "live.mjpeg"));
}

function unfocus() {
  closeZones();
  stopImg($("focus-img"));
  state.focused = null;
  $("focus").hidden = true;
  delete $("focus").dataset.cameraId;
  if (location.hash) history.replaceState(null, "", location.pathname + location.search);
  renderWall(true);
}

// Exit zones and masks (安全出口 / 屏蔽区域): the editor replaces the live view (its stream stops) until closed.
function setupZoneEditor(canEdit) {
  setupZones({ canEdit });
  $("zones-open").addEventListener("click", () => {
    if (!state.focused) return;
    stopImg($("focus-img"));
    openZones(state.focused);
  });
  document.addEventListener("zones-closed", () => {
    if (state.focused) startImg($("focus-img"), camUrl(state.focused, "live.mjpeg"));
  });
}

// Video patrol (视频巡查): one action records a hazard with the camera's current frame as evidence.
async function setupPatrol() {
  try {
    const cfg = await get("/api/hazards/config");
    $("patrol-cat").replaceChildren(...cfg.categories.map((c) => h("option", { value: c.key }, c.name)));
    $("patrol").hidden = false;
    $("patrol-record").addEventListener("click", recordHazard);
  } catch (err) {
    toast(err.message);
  }
}

async function recordHazard() {
  const id = state.focused;
  if (!id) return;
  const btn = $("patrol-record");
  btn.disabled = true;
  try {
    const hz = await post(camUrl(id, "patrol-hazard"), { category: $("patrol-cat").value });
    toast(t("wall.hazard.saved").replace("{id}", hz.id), "info");
  } catch (err) {
    toast(`${t("error.generic")}: ${err.message}`);
  } finally {
    btn.disabled = false;
  }
}

async function snapshot() {
  const id = state.focused;
  if (!id) return;
  const btn = $("focus-snap");
  btn.disabled = true;
  try {
    const resp = await fetch(camUrl(id, "snapshot.jpg"), { credentials: "same-origin", cache: "no-store" });
    if (!resp.ok) {
      let msg = `${resp.status}`;
      try { msg = (await resp.json()).error || msg; } catch { /* not JSON */ }
      throw new Error(msg);
    }
    const blob = await resp.blob();
    const url = URL.createObjectURL(blob);
    const stamp = new Date().toISOString().replace(/[:.]/g, "-");
    const item = h("a.snap", { href: url, download: `${id}-${stamp}.jpg`, title: t("wall.snapshot.saved") },
      h("img", { src: url, alt: t("wall.snapshot") }));
    const snaps = $("snaps");
    snaps.prepend(item);
    while (snaps.children.length > 6) {
      URL.revokeObjectURL(snaps.lastElementChild.href);
      snaps.lastElementChild.remove();
    }
    toast(t("wall.snapshot.saved"), "info");
  } catch (err) {
    toast(`${t("error.generic")}: ${err.message}`);
  } finally {
    btn.disabled = false;
  }
}

boot().catch((err) => toast(err.message || String(err)));
