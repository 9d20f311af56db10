// The alarm board of every officer page (console, video wall, hazards, assessor): whatever page the
// duty officer is on, a new or escalated alarm sounds, shows a banner with the unit and a one-click jump
// to the incident on the console, flashes the title and favicon, and raises a system notification when
// the tab is hidden. System health (health.updated, /healthz, 503 bodies) shows a red banner with sound.
//
// Sound policy (as on alarm panels): an alarm sounds until it is acknowledged. "Silence" applies to the
// alarms present when it is pressed (incident id + escalation level, or the set of failing checks) and
// for at most SILENCE_MAX_MS: a new alarm, an escalation or a new fault sounds again at once. The silence
// is shared by the pages of this browser (localStorage), so moving between pages does not undo it.
//
// The board keeps its own live feed (a second WebSocket and an initial fetch of open incidents), so a
// page opened during an alarm alerts too, and the page scripts only call startAlerts() once.

import { onLangChange, t } from "./i18n.js";
import "./alerts_i18n.js";
import { can, connectLive, fmtDuration, get, h, kindLabel, now, serialised } from "./common.js";
import { Alerter, audioState, tryUnlock } from "./sound.js";

const SILENCE_KEY = "firelink.silence";
const SILENCE_MAX_MS = 5 * 60 * 1000;
const OFFLINE_GRACE_MS = 15000;
const HEALTH_POLL_MS = 10000;
const RANK = { off: 0, fault: 1, normal: 2, escalated: 3 };
const MAX_CARDS = 3;

// The console's 静音 is bound as soon as this module runs, not when the board starts (after GET /api/me): a click
// while the page still loads is not lost. It silences, once the board has its list of alarms, the alarms that
// were sounding at the click (opened, or last escalated, before it) — as a click on a loaded page would; an
// alarm newer than the click still sounds.
let board = null; // this page's board, once started
let earlyMute = null; // when 静音 was clicked before the board knew the alarms (this machine's clock, ms)
document.getElementById("mute")?.addEventListener("click", () => {
  if (board && board.loaded) board.toggleSilence();
  else if (earlyMute === null) earlyMute = Date.now(); // (the button still says 静音: a second click means the same)
});

/**
 * Starts alerting on this page. On the console every user who may open it gets the sound; on the
 * other pages only the station's officers (power "act") do. Returns the board (chime(), silence toggling), or null
 * when this user gets no alerts on this page.
 */
export function startAlerts(me, { page }) {
  const officer = can(me, "act");  // the station's officers (dispatch.roles)
  if (page !== "console" && !officer) return null;
  board = new AlarmBoard(page, officer);
  board.start();
  return board;
}

function loadSilence() {
  try {
    const s = JSON.parse(localStorage.getItem(SILENCE_KEY) || "null");
    if (s && Array.isArray(s.keys) && typeof s.until === "number") return s;
  } catch { /* unreadable: not silenced */ }
  return { keys: [], until: 0 };
}

function saveSilence(s) {
  try { localStorage.setItem(SILENCE_KEY, JSON.stringify(s)); } catch { /* private mode: this page only */ }
}

/** The failing checks of a /healthz or health.updated body (older bodies: booleans). */
export function downOf(body) {
  if (!body || typeof body !== "object") return [];
  if (Array.isArray(body.down)) return [...new Set(body.down.map(String))].sort();
  const down = [];
  if (body.database === false || (body.database && body.database.ok === false)) down.push("database");
  if (body.mqtt === false) down.push("mqtt_intake");
  return down.sort();
}

class AlarmBoard {
  constructor(page, officer) {
    this.page = page;
    this.onConsole = page === "console";
    this.officer = officer;
    this.alarms = new Map(); // unacknowledged incidents by id
    this.down = []; // failing health checks
    this.offline = false; // live feed lost for longer than OFFLINE_GRACE_MS
    this.offlineTimer = null;
    this.healthPoll = null;
    this.healthSeq = 0; // bumped by each health.updated event: older /healthz answers are dropped
    this.announced = new Set(); // keys already notified on this page
    this.silenced = loadSilence();
    this.silenceTimer = null;
    this.sound = new Alerter(document.getElementById("sound-banner"));
    this.baseTitle = document.title;
    this.shownTitle = null;
    this.flashOn = false;
    this.flashTimer = null;
    this.favicon = null;
    this.baseFavicon = null;
    this.refetch = serialised(() => this.load());
    this.loaded = false; // the first list of alarms is in
  }

  /** One short chime (a unit's reply on the console), whatever the silence. */
  chime() { this.sound.chime(); }

  start() {
    this.stack = h("div#alert-stack.alert-stack", { "aria-live": "assertive" });
    document.body.append(this.stack);
    this.placeStack();
    window.addEventListener("resize", () => this.placeStack());
    this.setupDuty();  // (#mute is bound at the top of this module)
    window.addEventListener("storage", (e) => {
      if (e.key === SILENCE_KEY) { this.silenced = loadSilence(); this.render(); }
    });
    window.addEventListener("firelink:degraded", (e) => this.onDegraded(e.detail));
    document.addEventListener("visibilitychange", () => this.render());
    onLangChange(() => this.render());
    this.render();
    this.refetch();
    connectLive({
      onEvent: (ev) => this.onEvent(ev),
      onOpen: async () => {
        await Promise.all([this.refetch(), this.loadHealth()]);
        document.body.dataset.alertsLive = "1"; // the board is live and up to date (tests wait on it)
      },
      onState: (online) => this.onLinkState(online),
    });
  }

  // -------------------------------------------------------------- data

  async load() {
    const list = await get("/api/incidents?state=open&limit=1000");
    this.alarms = new Map(list.filter((i) => i.status === "new").map((i) => [i.id, i]));
    if (!this.loaded) {
      this.loaded = true;
      if (earlyMute !== null) this.silenceEarly(earlyMute + (now() - Date.now())); // (on the server's clock)
      earlyMute = null;
    }
    this.render();
  }

  async loadHealth() {
    const seq = this.healthSeq;
    try {
      const resp = await fetch("/healthz", { cache: "no-store", headers: { Accept: "application/json" } });
      const body = await resp.json();
      if (seq === this.healthSeq) this.setHealth(body); // else a health.updated event is newer
    } catch { /* unreachable: the live feed's state says so */ }
  }

  setHealth(body) {
    this.down = downOf(body);
    if (!this.down.length && this.healthPoll) { clearInterval(this.healthPoll); this.healthPoll = null; }
    this.render();
  }

  /** A 503 answer's body ({error, down}): show it, and poll /healthz until healthy (no event may follow). */
  onDegraded(body) {
    if (!body || !Array.isArray(body.down) || !body.down.length) return;
    this.setHealth(body);
    if (!this.healthPoll) this.healthPoll = setInterval(() => this.loadHealth(), HEALTH_POLL_MS);
  }

  onEvent(ev) {
    switch (ev.type) {
      case "incident.created":
      case "incident.updated":
      case "incident.escalated": {
        this.refetch.again();
        const inc = ev.incident;
        if (!inc) return;
        if (inc.status === "new") this.alarms.set(inc.id, { ...this.alarms.get(inc.id), ...inc });
        else this.alarms.delete(inc.id);
        this.render();
        return;
      }
      case "health.updated":
        this.healthSeq += 1;
        this.setHealth(ev.data);
        return;
      case "resync":
        this.refetch();
        return;
      default:
    }
  }

  onLinkState(online) {
    if (!online) delete document.body.dataset.alertsLive;
    clearTimeout(this.offlineTimer);
    this.offlineTimer = null;
    if (online) {
      if (this.offline) { this.offline = false; this.render(); }
      return;
    }
    this.offlineTimer = setTimeout(() => { this.offline = true; this.render(); }, OFFLINE_GRACE_MS);
  }

  // ------------------------------------------------------------ policy

  /** Every current alarm: [{key, level, kind: "incident"|"health"|"offline", incident?}]. */
  current() {
    const out = [...this.alarms.values()]
      .sort((a, b) => (b.escalation_level > 0) - (a.escalation_level > 0) || Date.parse(a.opened_at) - Date.parse(b.opened_at))
      .map((inc) => ({
        key: `incident:${inc.id}:${inc.escalation_level || 0}`,
        level: inc.escalation_level > 0 ? "escalated" : "normal",
        kind: "incident",
        incident: inc,
      }));
    if (this.down.length) out.push({ key: `health:${this.down.join(",")}`, level: "fault", kind: "health" });
    if (this.offline) out.push({ key: "offline", level: "fault", kind: "offline" });
    return out;
  }

  silenceActive() { return this.silenced.until > Date.now(); }

  isSilenced(a) { return this.silenceActive() && this.silenced.keys.includes(a.key); }

  toggleSilence() {
    const cur = this.current();
    const loud = cur.filter((a) => !this.isSilenced(a));
    if (loud.length) {
      this.silenced = { keys: cur.map((a) => a.key), until: Date.now() + SILENCE_MAX_MS };
    } else {
      this.silenced = { keys: [], until: 0 };
    }
    saveSilence(this.silenced);
    this.render();
  }

  /** 静音 clicked at `at` (server clock) while the page loaded: silences the alarms sounding then, as the click would have. */
  silenceEarly(at) {
    const then = this.current().filter((a) => a.kind === "incident" && !this.isSilenced(a)
      && Date.parse(a.incident.escalated_at || a.incident.opened_at) <= at);
    if (!then.length) return;
    const kept = this.silenceActive() ? this.silenced.keys : [];
    this.silenced = { keys: [...new Set([...kept, ...then.map((a) => a.key)])], until: Date.now() + SILENCE_MAX_MS };
    saveSilence(this.silenced);
  }

  render() {
    const cur = this.current();
    const max = (list) => list.reduce((m, a) => (RANK[a.level] > RANK[m] ? a.level : m), "off");
    const loud = cur.filter((a) => !this.isSilenced(a));
    const level = max(cur);
    this.sound.set(level, max(loud));
    this.sound.silence(cur.length && !loud.length ? this.silenced.until : 0);
    clearTimeout(this.silenceTimer);
    if (this.silenceActive() && cur.some((a) => this.isSilenced(a))) {
      this.silenceTimer = setTimeout(() => this.render(), this.silenced.until - Date.now() + 50);
    }
    this.paintMute(cur, loud);
    this.paintStack(cur);
    this.paintTitle(cur);
    this.notify(cur);
  }

  // ------------------------------------------------------------ output

  paintMute(cur, loud) {
    const mute = document.getElementById("mute");
    if (!mute) return;
    const silenced = cur.length > 0 && !loud.length;
    mute.dataset.i18n = silenced ? "sound.unmute" : "sound.mute";
    mute.textContent = t(mute.dataset.i18n);
    mute.classList.toggle("on", silenced);
    mute.disabled = this.loaded && !cur.length; // (until the alarms are known a click is kept: earlyMute)
  }

  placeStack() {
    const bar = document.querySelector(".topbar");
    const top = bar ? Math.max(8, bar.getBoundingClientRect().bottom + 8) : 8;
    this.stack.style.top = `${Math.round(top)}px`;
  }

  paintStack(cur) {
    const cards = [];
    for (const a of cur) {
      if (a.kind === "incident") continue;
      const text = a.kind === "offline" ? t("health.offline") : healthText(this.down);
      cards.push(h("div.alert-card.health", { dataset: { alert: a.kind, down: this.down.join(" ") }, role: "alert" },
        h("span.ac-text", text),
        this.silenceButton(a)));
    }
    const incidents = this.onConsole ? [] : cur.filter((a) => a.kind === "incident");
    for (const a of incidents.slice(0, MAX_CARDS)) {
      const inc = a.incident;
      const unit = (inc.unit && inc.unit.name) || inc.unit_id;
      cards.push(h("div.alert-card.incident", {
        dataset: { alert: "incident", incident: String(inc.id), level: a.level }, role: "alert",
      },
      h("div.ac-head",
        h("span.kind-badge", { dataset: { kind: inc.kind } }, kindLabel(inc.kind)),
        a.level === "escalated" ? h("span.esc-badge", t("alert.escalated")) : null,
        h("span.ac-timer", { dataset: { openedAt: inc.opened_at } }, elapsed(inc.opened_at))),
      h("div.ac-unit", unit),
      inc.unit && inc.unit.address ? h("div.ac-addr", inc.unit.address) : null,
      h("div.ac-actions",
        h("a.btn.alert-go", { href: `/#incident/${inc.id}` }, t("alert.go")),
        this.silenceButton(a))));
    }
    if (incidents.length > MAX_CARDS) {
      cards.push(h("a.alert-card.more", { href: "/" }, t("alert.more", { n: incidents.length - MAX_CARDS })));
    }
    this.stack.replaceChildren(...cards);
    this.stack.hidden = !cards.length;
  }

  silenceButton(a) {
    const silenced = this.isSilenced(a);
    return h("button.btn-small.alert-silence", {
      type: "button", class: silenced ? "on" : "", onclick: () => this.toggleSilence(),
    }, t(silenced ? "sound.unmute" : "alert.silence"));
  }

  paintTitle(cur) {
    const incidents = cur.filter((a) => a.kind === "incident");
    const shown = incidents.length ? incidents : cur;
    if (!shown.length) {
      clearInterval(this.flashTimer);
      this.flashTimer = null;
      this.setTitle(null);
      this.setFavicon(false);
      return;
    }
    const first = shown[0];
    const name = first.kind === "incident"
      ? ((first.incident.unit && first.incident.unit.name) || first.incident.unit_id)
      : first.kind === "offline" ? t("health.offline") : healthText(this.down);
    this.alertTitle = shown.length > 1 ? t("alert.title.n", { n: shown.length, unit: name }) : t("alert.title", { unit: name });
    if (!this.flashTimer) {
      this.flashOn = true;
      this.flashTimer = setInterval(() => this.flash(), 1000);
    }
    this.flash(true);
  }

  flash(keep = false) {
    if (!keep) this.flashOn = !this.flashOn;
    for (const el of this.stack.querySelectorAll("[data-opened-at]")) el.textContent = elapsed(el.dataset.openedAt);
    this.setTitle(this.flashOn ? this.alertTitle : null);
    this.setFavicon(this.flashOn);
  }

  /** Sets (text) or restores (null) the title; a title the page set meanwhile becomes the base. */
  setTitle(text) {
    if (document.title !== this.shownTitle) this.baseTitle = document.title;
    const next = text || this.baseTitle;
    if (document.title !== next) document.title = next;
    this.shownTitle = document.title;
  }

  setFavicon(alarm) {
    if (!this.favicon) {
      this.favicon = document.querySelector("link[rel~='icon']");
      if (!this.favicon) {
        this.favicon = h("link", { rel: "icon", href: "/static/flame.svg" });
        document.head.append(this.favicon);
      }
      this.baseFavicon = this.favicon.getAttribute("href");
    }
    const href = alarm ? ALARM_ICON : this.baseFavicon;
    if (this.favicon.getAttribute("href") !== href) this.favicon.setAttribute("href", href);
  }

  /** A system notification per new alarm key, when the tab is hidden and the officer allowed them. */
  notify(cur) {
    const fresh = cur.filter((a) => !this.announced.has(a.key));
    if (!fresh.length) return;
    if (!document.hidden || !("Notification" in window) || Notification.permission !== "granted") {
      // Seen on a visible page: announced. On a hidden page without permission there is nothing more to do.
      for (const a of fresh) this.announced.add(a.key);
      return;
    }
    for (const a of fresh) {
      this.announced.add(a.key);
      if (this.isSilenced(a)) continue;
      let title;
      let body;
      let target = "/";
      if (a.kind === "incident") {
        const inc = a.incident;
        title = t("notify.title", { unit: (inc.unit && inc.unit.name) || inc.unit_id });
        body = [kindLabel(inc.kind), inc.unit && inc.unit.address,
          inc.escalation_level > 0 ? t("notify.escalated", { level: inc.escalation_level }) : null]
          .filter(Boolean).join(" · ");
        target = `/#incident/${inc.id}`;
      } else {
        title = a.kind === "offline" ? t("health.offline") : healthText(this.down);
        body = "";
      }
      try {
        const n = new Notification(title, { body, tag: a.key.replace(/:\d+$/, ""), renotify: true, requireInteraction: true });
        n.onclick = () => {
          window.focus();
          if (this.onConsole) location.hash = target.slice(1);
          else location.assign(target);
          n.close();
        };
      } catch { /* notifications unavailable here */ }
    }
  }

  // -------------------------------------------------------------- duty

  /**
   * "开始值班": the one explicit action that unlocks sound and asks for system notifications. Shown on
   * officer pages when the browser blocked sound at load or notifications were never asked; it stays
   * until clicked (its own click is never lost to a layout change: nothing around it moves).
   */
  setupDuty() {
    if (!this.officer) return;
    const needsPermission = "Notification" in window && Notification.permission === "default";
    if (audioState() !== "blocked" && !needsPermission) return;
    const bar = document.querySelector(".topbar-right");
    if (!bar || document.getElementById("start-duty")) return;
    const btn = h("button#start-duty.btn-small.start-duty", {
      type: "button", dataset: { i18n: "duty.start", i18nTitle: "duty.start.title" }, title: t("duty.start.title"),
      onclick: () => {
        tryUnlock();
        if ("Notification" in window && Notification.permission === "default") {
          Notification.requestPermission().catch(() => {});
        }
        btn.hidden = true;
      },
    }, t("duty.start"));
    const pill = document.getElementById("sound-state");
    if (pill && pill.parentElement === bar) pill.after(btn);
    else bar.prepend(btn);
  }
}

function healthText(down) {
  if (down.includes("mqtt_intake")) return t("health.mqtt_intake");
  if (down.includes("database")) return t("health.database");
  return t("health.other", { names: down.join(", ") });
}

function elapsed(iso) { return fmtDuration((now() - Date.parse(iso)) / 1000); }

const ALARM_ICON = "data:image/svg+xml," + encodeURIComponent(
  "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'><circle cx='8' cy='8' r='7.5' fill='#ff3b30'/>"
  + "<rect x='7' y='3' width='2' height='6.5' fill='#fff'/><rect x='7' y='11' width='2' height='2' fill='#fff'/></svg>");
