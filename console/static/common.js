// Shared browser plumbing: API calls (cookie session + X-CSRF-Token), the 401 → login rule,
// the live WebSocket with reconnect, timers and small DOM helpers (sound: sound.js, alerts.js).

import { learnLabels, t } from "./i18n.js";

const CSRF_KEY = "firelink.csrf";
let csrfToken = sessionStorage.getItem(CSRF_KEY);
let serverClock = false; // clockSkewMs came from /api/me
let clockSkewMs = 0; // server time − browser time: from /api/me's "now" (exact), else the Date header when large

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

export function setCsrf(token) {
  csrfToken = token || null;
  if (csrfToken) sessionStorage.setItem(CSRF_KEY, csrfToken);
  else sessionStorage.removeItem(CSRF_KEY);
}

/**
 * Sends the browser to the login page, remembering where to come back to. "expired" only when this tab
 * had a session (a CSRF token from a login or /api/me): a first visit is not an expiry.
 */
export function toLogin(reason) {
  const here = location.pathname + location.search + location.hash;
  const q = new URLSearchParams({ next: here });
  if (reason) q.set("reason", reason);
  location.replace("/login.html?" + q.toString());
  // Stop the caller: nothing more should run on a page that is leaving.
  return new Promise(() => {});
}

/** A 401 means "expired" only if there was a session: this tab had one, or the server saw a stale cookie. */
function hadSession(body) {
  return !!csrfToken || !!(body && typeof body === "object" && body.session_expired);
}

export async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let resp;
  try {
    resp = await fetch(path, {
      method, headers, credentials: "same-origin", cache: "no-store",
      body: body !== undefined ? JSON.stringify(body) : undefined,
    });
  } catch (err) {
    throw new ApiError(0, t("error.network"), null);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (resp.status === 401) return toLogin(hadSession(data) ? "expired" : undefined);
  if (resp.status === 503 && data && Array.isArray(data.down)) {
    // The core says part of the alarm path is down: every page's health banner shows it (alerts.js).
    window.dispatchEvent(new CustomEvent("firelink:degraded", { detail: data }));
  }
  if (!resp.ok) {
    const msg = (data && data.error) || `${resp.status} ${resp.statusText}`;
    throw new ApiError(resp.status, msg, data);
  }
  const date = resp.headers.get("Date");
  if (date && !serverClock) {
    const skew = Date.parse(date) - Date.now();
    clockSkewMs = Math.abs(skew) > 3000 ? skew : 0;
  }
  return data;
}

/** POST a FormData (multipart: file uploads) with the session's CSRF token; JSON answer. */
export async function upload(path, form) {
  const headers = { Accept: "application/json" };
  if (csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let resp;
  try {
    resp = await fetch(path, { method: "POST", headers, credentials: "same-origin", body: form });
  } catch (err) {
    throw new ApiError(0, t("error.network"), null);
  }
  let data = null;
  try { data = await resp.json(); } catch { /* not JSON */ }
  if (resp.status === 401) return toLogin(hadSession(data) ? "expired" : undefined);
  if (!resp.ok) throw new ApiError(resp.status, (data && data.error) || `${resp.status} ${resp.statusText}`, data);
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body === undefined ? {} : body);

/** GET /api/me, keeping its CSRF token and learning its labels (alarm kinds, agencies). Redirects to login on 401. */
export async function loadMe() {
  const sent = Date.now();
  const me = await get("/api/me");
  if (me.csrf_token) setCsrf(me.csrf_token);
  learnLabels(me);
  if (me.now) {
    // The server's clock is the one that counts (deadlines, periods, "today"); tests inject it.
    serverClock = true;
    clockSkewMs = Date.parse(me.now) - (sent + Date.now()) / 2;
  }
  return me;
}

export async function logout() {
  try { await post("/api/logout"); } catch { /* leaving anyway */ }
  setCsrf(null);
  location.replace("/login.html");
}

export function homeFor(role) {
  if (role === "unit") return "/unit.html";
  if (role === "agency") return "/agency.html";
  if (role === "assistant") return "/report.html"; // a village/community fire assistant files reports
  return "/";
}

/** The pages each role works on (login's `next` may return only to one of these). */
const STAFF_PAGES = ["/", "/index.html", "/video.html", "/hazards.html", "/assessor.html", "/inspect.html",
  "/units.html", "/triage.html"];
export const PAGES_FOR = {
  admin: STAFF_PAGES, station_chief: STAFF_PAGES, deputy_chief: STAFF_PAGES, duty_officer: STAFF_PAGES,
  community_officer: STAFF_PAGES, assessor: STAFF_PAGES, brigade_reviewer: STAFF_PAGES, city_supervisor: STAFF_PAGES,
  unit: ["/unit.html", "/hazards.html", "/video.html"],
  agency: ["/agency.html", "/hazards.html", "/assessor.html"],
  assistant: ["/report.html"],
};

/** Whether the logged-in user (GET /api/me) has a power of dispatch.roles: act, read, approve, targets, admin. */
export function can(me, power) {
  return Boolean(me?.user?.can?.includes(power));
}

/**
 * Where login goes for `role` given a `next` parameter: back to `next` only when it is a same-origin
 * relative path ("/page.html?…#…", never "//host" or "/\\host" or "https:…") to a page of that role;
 * otherwise the role's home page. Never an open redirect.
 */
export function safeNext(role, next, origin = location.origin) {
  const home = homeFor(role);
  if (typeof next !== "string" || !next.startsWith("/") || next.startsWith("//") || next.includes("\\")) return home;
  let url;
  try { url = new URL(next, origin); } catch { return home; }
  if (url.origin !== origin) return home;
  if (!(PAGES_FOR[role] || []).includes(url.pathname)) return home;
  return url.pathname + url.search + url.hash;
}

/**
 * Serialises a page refresh: one run at a time; a call during a run queues exactly one more, so the
 * page always ends on a fetch that started after the last reason to refresh. `again()` queues one
 * more only if a run is in flight (an event that may predate or postdate that run's snapshot).
 */
export function serialised(run) {
  let current = null;
  let pending = false;
  const call = () => {
    if (current) { pending = true; return current; }
    current = (async () => {
      try {
        await run();
      } catch (err) {
        toast(err.message);
      } finally {
        current = null;
        if (pending) { pending = false; call(); }
      }
    })();
    return current;
  };
  call.again = () => { if (current) pending = true; };
  return call;
}

/** Shows the live connection's state in the page's #ws-state badge (every page has one). */
export function paintWsState(online) {
  const el = document.getElementById("ws-state");
  if (!el) return;
  el.dataset.online = online ? "1" : "0";
  el.dataset.i18n = online ? "ws.online" : "ws.offline";
  el.textContent = t(el.dataset.i18n);
}

/**
 * Live events. One WebSocket per page, shared by every caller (the page script and the alert board):
 * reconnects with backoff; each caller's `onOpen` runs on every (re)connect so it refetches (at once when
 * the socket is already open), `onState` follows the connection. `close()` unsubscribes that caller.
 */
export function connectLive({ onEvent, onOpen, onState = paintWsState }) {
  const sub = { onEvent, onOpen, onState };
  live.subs.add(sub);
  if (!live.started) startLive();
  else if (live.open) {
    if (onState) onState(true);
    if (onOpen) onOpen();
  }
  return {
    close() {
      live.subs.delete(sub);
      if (!live.subs.size) { live.stopped = true; if (live.ws) live.ws.close(); }
    },
  };
}

const live = { subs: new Set(), ws: null, open: false, started: false, stopped: false };

/** Calls `fn` on every subscriber; one subscriber's error is reported (uncaught) without starving the rest. */
function eachSub(fn) {
  for (const sub of [...live.subs]) {
    try { fn(sub); } catch (err) { setTimeout(() => { throw err; }); }
  }
}

function startLive() {
  live.started = true;
  let delay = 500;
  const open = () => {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    const ws = new WebSocket(url);
    live.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      live.open = true;
      delay = 500;
      eachSub((s) => { if (s.onState) s.onState(true); });
      eachSub((s) => { if (s.onOpen) s.onOpen(); });
    };
    ws.onmessage = (m) => {
      let ev;
      try { ev = JSON.parse(m.data); } catch { return; }
      if (ev.type === "pong" || ev.type === "hello") return;
      eachSub((s) => s.onEvent(ev));
    };
    ws.onclose = async () => {
      live.open = false;
      eachSub((s) => { if (s.onState) s.onState(false); });
      if (live.stopped) return;
      if (!opened) {
        // The handshake failed: maybe the session is gone. /api/me answers 401 → login.
        try { await get("/api/me"); } catch { /* network down: keep retrying */ }
      }
      setTimeout(open, delay);
      delay = Math.min(delay * 2, 10000);
    };
  };
  open();
  // Keep NAT/proxies from idling the socket out; the server also heartbeats.
  setInterval(() => { if (live.ws && live.ws.readyState === 1) live.ws.send("ping"); }, 25000);
}

// ---------------------------------------------------------------- sound

// The alarm sound engine lives in sound.js (kept here for the pages that import it from common.js);
// the officer pages' alarm board in alerts.js.
export { Alerter } from "./sound.js";

// ---------------------------------------------------------------- time

export function now() { return Date.now() + clockSkewMs; }

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${ss}` : `${String(m).padStart(2, "0")}:${ss}`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  const pad = (n) => String(n).padStart(2, "0");
  const today = new Date(now());
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === today.toDateString()) return hms;
  return `${d.getMonth() + 1}-${pad(d.getDate())} ${hms}`;
}

/** A response time, to the second: "12 s" under a minute, else mm:ss (h:mm:ss). */
export function fmtSeconds(s) {
  if (s === null || s === undefined || !Number.isFinite(Number(s))) return "—";
  const r = Math.round(Number(s));
  return r < 60 ? `${r} s` : fmtDuration(r);
}

/**
 * Elements with data-since="ISO" show a running mm:ss; with data-late-after="N" they get
 * class "late" after N seconds (unless data-stopped is set).
 */
export function startTimers() {
  const paint = () => {
    for (const el of document.querySelectorAll("[data-since]")) {
      const secs = (now() - Date.parse(el.dataset.since)) / 1000;
      el.textContent = fmtDuration(secs);
      const lateAfter = Number(el.dataset.lateAfter || 0);
      el.classList.toggle("late", lateAfter > 0 && secs >= lateAfter);
    }
  };
  paint();
  setInterval(paint, 500);
  return paint;
}

// ---------------------------------------------------------------- DOM

/** h("div.cls#id", {attr: v, onclick: fn, dataset: {...}}, ...children) */
const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element: svg("rect", {x: 1, width: 4}, ...children); children are nodes or text. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function h(sel, attrs, ...children) {
  const tag = sel.match(/^[a-z0-9]*/i)[0] || "div";
  const el = document.createElement(tag);
  for (const [, mark, name] of sel.slice(tag.length).matchAll(/([.#])([^.#]+)/g)) {
    if (mark === "#") el.id = name;
    else el.classList.add(name);
  }
  // The second argument is attributes only when it is a plain object; anything else (a node, an array,
  // a string, a number — 0 included — or a boolean) is the first child.
  if (attrs !== null && attrs !== undefined
      && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") { for (const c of String(v).split(/\s+/)) if (c) el.classList.add(c); }
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let toastTimer = null;
export function toast(message, kind = "error") {
  let el = document.getElementById("toast");
  if (!el) {
    el = h("div#toast", { role: "alert" });
    document.body.append(el);
  }
  el.textContent = message;
  el.className = "toast " + kind;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 6000);
}

export function kindLabel(kind) { return t("kind." + kind); }

export function telLink(phone) {
  return phone ? h("a.tel", { href: "tel:" + phone }, phone) : "—";
}
