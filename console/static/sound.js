// The alarm sound engine of every page: one WebAudio context per page (no audio files), a repeating
// pattern per alert level, one-off chimes, and the always-visible sound state (#sound-state).
//
// Browsers start an AudioContext only after a user gesture on the page — or on a page reached by a
// same-origin navigation from a page that had one (the login click, a nav link), or always under the
// kiosk flag `--autoplay-policy=no-user-gesture-required` (docs/console.md). The context is created at
// load; when the browser holds it suspended the page says so ("blocked") and the next gesture anywhere
// resumes it. Unlocking never moves what the user is pressing and never cancels the gesture: what it
// shows or hides is fixed-position, the indicator is the first item of the right-aligned top-bar group
// (its width changes move nothing else), and repaints wait until the gesture's click has landed — a
// shifting banner used to swallow the first click after load.

import { onLangChange, t } from "./i18n.js";
import "./alerts_i18n.js";

/** Levels: "off" | "normal" (unacknowledged) | "escalated" | "fault" (system health). */
const PATTERNS = {
  normal: { every: 1600, tones: [[880, 0.18, 0.3, 0], [880, 0.18, 0.3, 0.3]] },
  escalated: { every: 700, tones: [[1400, 0.14, 0.6, 0], [1000, 0.14, 0.6, 0.18], [1400, 0.14, 0.6, 0.36]] },
  fault: { every: 2500, tones: [[660, 0.45, 0.35, 0], [440, 0.45, 0.35, 0.5]] },
};
const GESTURES = ["pointerdown", "pointerup", "touchend", "keydown", "click"];

let shared = null; // the page's one AudioContext (null: not created / unsupported)
const listeners = new Set();

function audioContext() {
  if (shared && shared.state !== "closed") return shared;
  const Ctx = window.AudioContext || window.webkitAudioContext;
  if (!Ctx) return null;
  try {
    shared = new Ctx();
  } catch {
    return null; // no audio device
  }
  shared.addEventListener("statechange", () => { for (const fn of listeners) fn(); });
  return shared;
}

/** Resumes the context if the browser allows it now (inside a gesture, or after one). Idempotent. */
export function tryUnlock() {
  const c = audioContext();
  if (c && c.state !== "running") c.resume().catch(() => {});
}

// While a gesture is in progress (finger or button down, until its click), nothing the unlock causes is
// shown or hidden: a touch's click is hit-tested after touchend, so an overlay vanishing in between would
// send the click to whatever lies beneath it.
let gesture = false;
let gestureEnd = null;
const afterGesture = new Set();

function endGesture() {
  clearTimeout(gestureEnd);
  gestureEnd = null;
  if (!gesture) return;
  gesture = false;
  setTimeout(() => { for (const fn of afterGesture) fn(); });
}

let armed = false;
function armGestures() {
  if (armed) return;
  armed = true;
  // Capture phase, passive, no preventDefault: observe the gesture, never take it.
  for (const name of GESTURES) window.addEventListener(name, tryUnlock, { capture: true, passive: true });
  const opts = { capture: true, passive: true };
  for (const name of ["pointerdown", "touchstart"]) {
    window.addEventListener(name, () => { gesture = true; clearTimeout(gestureEnd); }, opts);
  }
  window.addEventListener("click", endGesture, opts);
  for (const name of ["pointerup", "pointercancel", "touchend", "touchcancel"]) {
    // No click follows a drag or a cancelled touch: end the gesture anyway, a little later.
    window.addEventListener(name, () => { clearTimeout(gestureEnd); gestureEnd = setTimeout(endGesture, 400); }, opts);
  }
}

// At load, once: the context runs at once where the browser allows it (kiosk flag, or a gesture on the page
// this one was reached from); otherwise it waits for the first gesture on this page. Nothing else resumes
// it, so what the page says ("blocked") stays true until a gesture actually happens here.
audioContext();
tryUnlock();
armGestures();

/** "on" | "blocked" | "unsupported" */
export function audioState() {
  const c = audioContext();
  if (!c) return "unsupported";
  return c.state === "running" ? "on" : "blocked";
}

/**
 * A page's alarm sound. `banner` (optional) is a fixed, click-through notice shown while the browser
 * blocks sound; `#sound-state` in the top bar shows on / blocked / silenced. Options: `step: true` adds
 * the phone page's "tap to enable sound" card while sound is blocked.
 * level(): what the page shows (body[data-alert]); the sound follows `soundLevel`, which a silence
 * (silence(until)) turns off without hiding the alarm.
 */
export class Alerter {
  constructor(banner, { step = false } = {}) {
    this.banner = banner || null;
    this.level = "off";
    this.soundLevel = "off";
    this.silencedUntil = 0; // ms epoch; > now: the current alarms are silenced
    this.timer = null;
    this.pill = ensurePill();
    this.step = step ? ensureStep() : null;
    listeners.add(() => {
      // Sound just became possible: play the current alarm now, not at the next tick.
      if (audioState() === "on" && this.soundLevel !== "off") this.restart();
      this.paint();
    });
    afterGesture.add(() => this.paint());
    onLangChange(() => this.paint());
    this.paint();
  }

  get unlocked() { return audioState() === "on"; }

  /** Kept for pages that call it from their own gesture handlers. */
  unlock() { tryUnlock(); }

  /** Sets the alarm level shown and (unless given separately) sounded. */
  set(level, soundLevel = level) {
    if (level !== this.level) {
      this.level = level;
      document.body.dataset.alert = level;
    }
    if (soundLevel !== this.soundLevel) {
      this.soundLevel = soundLevel;
      this.restart();
    }
    this.paint();
  }

  /** The page shows "silenced until …" (0: not silenced). */
  silence(until) {
    this.silencedUntil = until || 0;
    this.paint();
  }

  restart() {
    clearInterval(this.timer);
    this.timer = null;
    const p = PATTERNS[this.soundLevel];
    if (!p) return;
    const tick = () => this.pattern(p);
    tick();
    this.timer = setInterval(tick, p.every);
  }

  /** One short chime now (new dispatch, new instruction). */
  chime() { chime(); }

  pattern(p) { for (const [freq, dur, gain, at] of p.tones) this.tone(freq, dur, gain, at); }

  tone(freq, dur, gain, at) { tone(freq, dur, gain, at); }

  /** What the sound indicator says: "on" | "blocked" | "unsupported" | "silenced". */
  get state() {
    const a = audioState();
    if (a === "on" && this.silencedUntil > Date.now() && this.level !== "off") return "silenced";
    return a;
  }

  paint() {
    if (gesture) return; // repainted when the gesture is over (afterGesture)
    const st = this.state;
    document.body.dataset.sound = st;
    const blocked = st === "blocked";
    if (this.banner) {
      this.banner.hidden = !blocked;
      this.banner.dataset.alarm = blocked && this.level !== "off" ? "1" : "0";
      this.banner.dataset.i18n = this.level !== "off" ? "sound.blocked.alarm" : "sound.enable";
      this.banner.textContent = t(this.banner.dataset.i18n);
    }
    if (this.step) this.step.hidden = !blocked;
    const pill = this.pill;
    if (!pill) return;
    pill.dataset.state = st;
    pill.dataset.alarm = this.soundLevel !== "off" ? "1" : "0";
    let text;
    if (st === "silenced") text = t("sound.silenced.until", { time: clock(this.silencedUntil) });
    else text = t("sound.state." + st);
    pill.querySelector(".ss-text").textContent = text;
    pill.title = st === "silenced" ? t("sound.silenced.hint") : text;
  }
}

/** One square-wave beep `at` seconds from now; nothing while the browser holds sound. */
function tone(freq, dur, gain, at) {
  const c = audioContext();
  if (!c || c.state !== "running") return;
  const start = c.currentTime + at;
  const osc = c.createOscillator();
  const g = c.createGain();
  osc.type = "square";
  osc.frequency.value = freq;
  g.gain.setValueAtTime(0.0001, start);
  g.gain.exponentialRampToValueAtTime(gain, start + 0.01);
  g.gain.exponentialRampToValueAtTime(0.0001, start + dur);
  osc.connect(g).connect(c.destination);
  osc.start(start);
  osc.stop(start + dur + 0.02);
}

export function chime() { tone(1046, 0.12, 0.25, 0); tone(1318, 0.18, 0.25, 0.14); }

/** One ring of an incoming call (call.js repeats it while the call rings). */
export function ring() { for (let i = 0; i < 4; i += 1) tone(i % 2 ? 660 : 880, 0.2, 0.3, i * 0.25); }

function clock(ms) {
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** The top bar's sound indicator: first in the right-aligned group, so its text changes move no button. */
function ensurePill() {
  let pill = document.getElementById("sound-state");
  if (pill) return pill;
  const bar = document.querySelector(".topbar-right");
  if (!bar) return null;
  pill = document.createElement("button");
  pill.type = "button";
  pill.id = "sound-state";
  pill.className = "sound-state";
  pill.innerHTML = '<span class="ss-icon" aria-hidden="true"></span><span class="ss-text"></span>';
  pill.addEventListener("click", tryUnlock);
  bar.prepend(pill);
  return pill;
}

/** Phone page: a fixed card (over the page, not in its flow) asking for one tap to enable sound. */
function ensureStep() {
  let card = document.getElementById("sound-step");
  if (card) return card;
  card = document.createElement("div");
  card.id = "sound-step";
  card.className = "sound-step";
  card.hidden = true;
  const text = document.createElement("p");
  text.dataset.i18n = "sound.step.text";
  text.textContent = t("sound.step.text");
  const btn = document.createElement("button");
  btn.type = "button";
  btn.id = "sound-step-btn";
  btn.className = "btn btn-primary";
  btn.dataset.i18n = "sound.step.button";
  btn.textContent = t("sound.step.button");
  btn.addEventListener("click", () => {
    tryUnlock();
    // Confirm with a chime once the browser lets it play (the tap above resumed the context).
    const c = audioContext();
    if (c) c.resume().then(chime, () => {});
  });
  card.append(text, btn);
  document.body.append(card);
  const bar = document.querySelector(".topbar");
  if (bar) card.style.top = `${Math.round(bar.getBoundingClientRect().bottom + 6)}px`;
  return card;
}
