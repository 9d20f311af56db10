// Live calls (docs/calls.md), the browser side, shared by the console (指挥室), the unit's phone page and the agency
// page. Each participant has one RTCPeerConnection to the server (aiortc): the page gathers its ICE candidates,
// POSTs the complete offer to /api/incidents/{id}/call/join and sets the answer (no trickle ICE). What happens
// next (ringing, connected, who joined, failures, ended) arrives as `call.updated` on the page's WebSocket; the
// officer's camera switch request reaches the phone as `call.control`.
//
// Bad networks: audio is sent with high priority and video with low, the video track hints "motion" so the
// browser lowers resolution before frame rate; a connection that fails or stays disconnected is rebuilt into the
// same call (the server replaces it); why a call could not connect is shown from the call's failures.

import { ApiError, get, h, now, post, toast } from "./common.js";
import { getLang, onLangChange, t } from "./i18n.js";
import { ring, tryUnlock } from "./sound.js";
import "./call_i18n.js";

const GATHER_MS = 3000; // at most this long for ICE candidates before offering what there is
const REJOIN_AFTER_MS = 2500; // a connection disconnected this long is rebuilt
const RING_EVERY_MS = 2200;
const DEVICE_KEY = "firelink.call.device";

/** This page's id in calls, kept across reloads of the tab (a reloaded phone rejoins its call). */
export const DEVICE = (() => {
  let id = sessionStorage.getItem(DEVICE_KEY);
  if (!id) {
    id = Array.from(crypto.getRandomValues(new Uint8Array(12)), (b) => b.toString(16).padStart(2, "0")).join("");
    sessionStorage.setItem(DEVICE_KEY, id);
  }
  return id;
})();

function videoConstraints(facing) {
  return { facingMode: { ideal: facing }, width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 20, max: 30 } };
}

const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => { clearTimeout(timer); pc.removeEventListener("icegatheringstatechange", check); resolve(); };
    const check = () => { if (pc.iceGatheringState === "complete") done(); };
    const timer = setTimeout(done, GATHER_MS);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

/**
 * One participant's media link to the server. `sendVideo`: the phone (rear camera first); officers and the
 * brigade receive the phone's video instead. Callbacks: onRemote(stream), onLocal(stream), onState(state).
 */
export class CallLink {
  constructor(incidentId, { sendVideo = false, onRemote = () => {}, onLocal = () => {}, onState = () => {} } = {}) {
    this.incidentId = incidentId;
    this.sendVideo = sendVideo;
    this.facing = "environment";
    this.onRemote = onRemote;
    this.onLocal = onLocal;
    this.onState = onState;
    this.pc = null;
    this.local = null;
    this.remote = new MediaStream();
    this.muted = false;
    this.wanted = true; // false once hung up or ended: no more rejoining
    this.state = "joining";
    this.rejoinTimer = null;
    this.ice = [];
  }

  get base() { return `/api/incidents/${this.incidentId}/call`; }

  /** Gets the microphone (and camera) and connects. Refusals are reported to the server, the call goes on. */
  async start(iceServers) {
    this.ice = iceServers || [];
    await this.acquire();
    await this.connect();
  }

  async acquire() {
    const report = (reason, err) => post(`${this.base}/report`, { reason, detail: String(err?.name || err || "").slice(0, 200) })
      .catch(() => {});
    if (!navigator.mediaDevices?.getUserMedia) {
      toast(t("call.insecure"));
      await report("permission_denied", "no mediaDevices (not a secure context)");
      return;
    }
    try {
      this.local = await navigator.mediaDevices.getUserMedia({ audio: AUDIO, video: this.sendVideo ? videoConstraints(this.facing) : false });
    } catch (err) {
      if (this.sendVideo) {
        try {
          this.local = await navigator.mediaDevices.getUserMedia({ audio: AUDIO });
          await report("camera_denied", err);
        } catch (err2) {
          await report("permission_denied", err2);
        }
      } else {
        await report("permission_denied", err);
      }
    }
    if (this.local) {
      const video = this.local.getVideoTracks()[0];
      if (video) video.contentHint = "motion"; // under pressure: lower resolution before frame rate
      for (const track of this.local.getAudioTracks()) track.enabled = !this.muted;
      this.onLocal(this.local);
    }
  }

  async connect() {
    clearTimeout(this.rejoinTimer);
    if (this.pc) { try { this.pc.close(); } catch { /* gone */ } }
    const pc = new RTCPeerConnection({ iceServers: this.ice, bundlePolicy: "max-bundle" });
    this.pc = pc;
    this.setState(this.state === "connected" || this.state === "reconnecting" ? "reconnecting" : "joining");
    const audio = this.local?.getAudioTracks()[0];
    const video = this.local?.getVideoTracks()[0];
    if (audio) {
      pc.addTransceiver(audio, { direction: "sendrecv", streams: [this.local],
        sendEncodings: [{ priority: "high", networkPriority: "high" }] });
    } else {
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    if (this.sendVideo) {
      if (video) {
        this.videoSender = pc.addTransceiver(video, { direction: "sendonly", streams: [this.local],
          sendEncodings: [{ maxBitrate: 900_000, priority: "low", networkPriority: "low" }] }).sender;
      }
    } else {
      pc.addTransceiver("video", { direction: "recvonly" });
    }
    pc.addEventListener("track", (e) => {
      for (const old of this.remote.getTracks().filter((x) => x.kind === e.track.kind)) this.remote.removeTrack(old);
      this.remote.addTrack(e.track);
      this.onRemote(this.remote);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.pc !== pc) return;
      const s = pc.connectionState;
      if (s === "connected") { clearTimeout(this.rejoinTimer); this.setState("connected"); }
      else if (s === "failed") this.rejoin(0);
      else if (s === "disconnected") { this.setState("reconnecting"); this.rejoin(REJOIN_AFTER_MS); }
    });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    if (this.pc !== pc || !this.wanted) return;
    const answer = await post(`${this.base}/join`, { sdp: pc.localDescription.sdp, device: DEVICE });
    if (this.pc !== pc) return;
    await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
  }

  /** Rebuilds the connection into the same call after `ms` unless it recovers first. */
  rejoin(ms) {
    clearTimeout(this.rejoinTimer);
    if (!this.wanted) return;
    this.setState("reconnecting");
    this.rejoinTimer = setTimeout(() => {
      if (!this.wanted || this.pc?.connectionState === "connected") return;
      this.connect().catch((err) => {
        if (err instanceof ApiError && err.status >= 400 && err.status < 500) { this.close(); return; } // call over
        this.rejoin(REJOIN_AFTER_MS);
      });
    }, ms);
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.onState(state);
  }

  setMuted(muted) {
    this.muted = muted;
    for (const track of this.local?.getAudioTracks() || []) track.enabled = !muted;
  }

  /** The phone switches between its rear and front camera (no renegotiation: the track is replaced). */
  async switchCamera() {
    if (!this.sendVideo || !this.videoSender || !navigator.mediaDevices) return;
    const facing = this.facing === "environment" ? "user" : "environment";
    const fresh = await navigator.mediaDevices.getUserMedia({ video: videoConstraints(facing) });
    const track = fresh.getVideoTracks()[0];
    track.contentHint = "motion";
    const old = this.local.getVideoTracks()[0];
    await this.videoSender.replaceTrack(track);
    this.facing = facing;
    if (old) { this.local.removeTrack(old); old.stop(); }
    this.local.addTrack(track);
    this.onLocal(this.local);
  }

  async hangup() {
    this.wanted = false;
    try { await post(`${this.base}/hangup`); } finally { this.close(); }
  }

  close() {
    this.wanted = false;
    clearTimeout(this.rejoinTimer);
    if (this.pc) { try { this.pc.close(); } catch { /* gone */ } }
    this.pc = null;
    for (const track of this.local?.getTracks() || []) track.stop();
    this.setState("closed");
  }

  /**
   * What flows, from getStats(): energy of the audio received (audioIn) and sent (audioOut), the received audio
   * level, video frames decoded (framesIn) and encoded (framesOut), the connection's round-trip time.
   */
  async stats() {
    const out = { state: this.pc?.connectionState || "closed", audioIn: 0, audioInLevel: 0, audioOut: 0, framesIn: 0,
      framesOut: 0, rtt: null, width: 0, height: 0 };
    if (!this.pc) return out;
    (await this.pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "audio") { out.audioIn = r.totalAudioEnergy || 0; out.audioInLevel = r.audioLevel || 0; }
      if (r.type === "inbound-rtp" && r.kind === "video") {
        out.framesIn = r.framesDecoded || 0; out.width = r.frameWidth || 0; out.height = r.frameHeight || 0;
      }
      if (r.type === "media-source" && r.kind === "audio") out.audioOut = r.totalAudioEnergy || 0;
      if (r.type === "outbound-rtp" && r.kind === "video") out.framesOut = r.framesEncoded || 0;
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") out.rtt = r.currentRoundTripTime ?? null;
    });
    return out;
  }
}

/** Repeats the ring tone (and the phone's vibration) while a call rings for this page. */
class Ringer {
  constructor() { this.timer = null; }
  set(on) {
    if (on && !this.timer) {
      const tick = () => { ring(); if (navigator.vibrate) navigator.vibrate([400, 200, 400]); };
      tick();
      this.timer = setInterval(tick, RING_EVERY_MS);
    } else if (!on && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
      if (navigator.vibrate) navigator.vibrate(0);
    }
  }
}

function fmtClock(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
}

function whoLabel(f) { return f.who || t("call.who." + f.side); }

/** A timeline entry's details for call.* actions (the console's and the assessor's timelines). */
export function callDetail(action, data) {
  const parts = [];
  if (action === "call.ringing" && data.direction) parts.push(t("call.dir." + data.direction));
  if (action === "call.failed") parts.push(t("call.failure." + data.reason, { who: data.who || "" }));
  if ((action === "call.reconnecting" || action === "call.reconnected") && data.who) parts.push(data.who);
  if (action === "call.ended") {
    parts.push(t("call.reason." + data.reason));
    if (data.duration_s !== null && data.duration_s !== undefined) parts.push(t("call.duration", { d: fmtClock(data.duration_s) }));
  }
  if (action === "call.connected" && Array.isArray(data.participants)) parts.push(data.participants.join("、"));
  return parts.join(" · ");
}

/**
 * The call card of a page. side: "command" (the console), "unit" (the phone page) or "agency". `canAct`: this
 * user may take part (officers with the act power, the unit, an agency that accepted). The page tells it which
 * incident is shown (`setIncident`) and passes the WebSocket's events (`onEvent`).
 */
export class CallPanel {
  constructor(root, { side, canAct = true, follow = false, label = null }) {
    this.root = root;
    this.label = label; // (call) → what the call is about, shown in its head (the agency page: the unit's name)
    this.side = side;
    this.canAct = canAct;
    this.follow = follow; // no incident set: show the latest live call known (the agency page)
    this.incident = null; // {id, status}
    this.calls = new Map(); // incident id → the call's view (live or last)
    this.ice = new Map(); // incident id → ICE servers given with the call
    this.link = null;
    this.linkIncident = null;
    this.busy = false;
    this.note = "";
    this.ringer = new Ringer();
    this.video = h("video.call-video", { autoplay: true, playsinline: true, muted: true });
    this.video.muted = true;
    this.audio = h("audio.call-audio", { autoplay: true });
    this.root.classList.add("call-panel");
    this.root.dataset.callSide = side;
    setInterval(() => this.paintTimer(), 500);
    onLangChange(() => this.render());
    this.render();
  }

  /** The incident the page shows (null: none); its call is fetched. */
  setIncident(inc) {
    const id = inc ? inc.id : null;
    const changed = id !== this.incident?.id;
    if (!changed && (!inc || inc.status === this.incident.status)) return;
    this.incident = inc ? { id: inc.id, status: inc.status } : null;
    if (changed && id) this.refresh(id);
    this.render();
  }

  async refresh(id) {
    try {
      const body = await get(`/api/incidents/${id}/call`);
      if (body.call) this.calls.set(id, body.call);
      this.ice.set(id, body.ice_servers || []);
      this.maybeRejoin(body.call);
    } catch { /* not allowed or offline: nothing to show */ }
    this.render();
  }

  /** call.updated / call.control from the page's WebSocket. */
  onEvent(ev) {
    if (ev.type === "call.updated" && ev.call) {
      const call = ev.call;
      this.calls.set(call.incident_id, call);
      if (this.link && this.linkIncident === call.incident_id && call.state === "ended") this.dropLink();
      this.render();
      return call;
    }
    if (ev.type === "call.control" && this.link && ev.incident_id === this.linkIncident && ev.action === "switch_camera") {
      this.link.switchCamera().catch((err) => toast(err.message || String(err)));
    }
    return null;
  }

  /** The call shown: the one this page is in, else the shown incident's. */
  shown() {
    const id = this.linkIncident ?? this.incident?.id;
    if (id) return this.calls.get(id) || null;
    if (!this.follow) return null;
    const known = [...this.calls.values()].sort((a, b) => (a.state === "ended") - (b.state === "ended")
      || Date.parse(b.started_at) - Date.parse(a.started_at));
    return known[0] || null; // a live call first, else the latest one (how it ended)
  }

  /** Calls ringing for the command room (the unit called) that this page is not in. */
  incoming() {
    if (this.side !== "command" || !this.canAct) return [];
    return [...this.calls.values()].filter((c) => c.state === "ringing" && c.direction === "to_command"
      && c.incident_id !== this.linkIncident);
  }

  mine(call) {
    const me = call?.participants.find((p) => p.side === this.side && (this.side !== "unit" || p.device === DEVICE));
    return me && me.state !== "left" && me.state !== "failed" ? me : null;
  }

  /** A reloaded page that was in the call (the phone, by its device id) goes back into it. */
  maybeRejoin(call) {
    if (!call || call.state === "ended" || this.link || !this.canAct || this.side !== "unit") return;
    const me = call.participants.find((p) => p.side === "unit" && p.device === DEVICE && p.state !== "left");
    if (me) this.join(call.incident_id);
  }

  async start() {
    const id = this.incident?.id;
    if (!id || this.busy) return;
    tryUnlock();
    this.busy = true;
    this.render();
    try {
      const body = await post(`/api/incidents/${id}/call`);
      this.calls.set(id, body.call);
      this.ice.set(id, body.ice_servers || []);
      this.busy = false;
      await this.join(id);
    } catch (err) {
      toast(`${t("error.generic")}: ${err.message}`);
    } finally {
      this.busy = false;
      this.render();
    }
  }

  async join(id = this.shown()?.incident_id) {
    if (!id || this.link) return;
    tryUnlock();
    const link = new CallLink(id, {
      sendVideo: this.side === "unit",
      onRemote: (stream) => this.attach(stream),
      onLocal: (stream) => { if (this.side === "unit") { this.video.srcObject = stream; this.video.play().catch(() => {}); } },
      onState: () => this.render(),
    });
    this.link = link;
    this.linkIncident = id;
    window.firelinkCall = link; // (for tests and the benchmark: getStats of the live call)
    this.render();
    try {
      if (!this.ice.has(id)) this.ice.set(id, (await get(`/api/incidents/${id}/call`)).ice_servers || []);
      await link.start(this.ice.get(id));
    } catch (err) {
      if (this.link === link) this.dropLink();
      toast(`${t("error.generic")}: ${err.message}`);
    }
    this.render();
  }

  attach(stream) {
    if (this.side !== "unit") {
      this.video.srcObject = stream;
      this.video.play().catch(() => {});
    }
    this.audio.srcObject = new MediaStream(stream.getAudioTracks());
    this.audio.play().catch(() => {});
  }

  async hangup() {
    const id = this.linkIncident ?? this.shown()?.incident_id;
    if (!id) return;
    try {
      if (this.link) await this.link.hangup();
      else await post(`/api/incidents/${id}/call/hangup`);
    } catch (err) {
      toast(`${t("error.generic")}: ${err.message}`);
    } finally {
      this.dropLink();
      this.render();
    }
  }

  dropLink() {
    if (this.link) this.link.close();
    this.link = null;
    this.linkIncident = null;
    this.video.srcObject = null;
    this.audio.srcObject = null;
  }

  toggleMute() {
    if (!this.link) return;
    this.link.setMuted(!this.link.muted);
    this.render();
  }

  async control(path, body, done) {
    const id = this.linkIncident;
    if (!id) return;
    try {
      await post(`/api/incidents/${id}/call/${path}`, body);
      if (done) toast(t(done), "info");
    } catch (err) {
      toast(`${t("error.generic")}: ${err.message}`);
    }
  }

  statusText(call) {
    if (!call) return t("call.state.idle");
    if (call.state === "ended") {
      const parts = [t("call.state.ended"), t("call.reason." + call.reason)];
      if (call.duration_s !== null && call.duration_s !== undefined) parts.push(t("call.duration", { d: fmtClock(call.duration_s) }));
      if (call.recording) parts.push(t("call.recorded"));
      return parts.join(" · ");
    }
    if (this.link && this.link.state === "reconnecting") return t("call.state.reconnecting");
    if (call.state === "ringing") {
      const out = (call.direction === "to_unit") === (this.side !== "unit");
      if (this.side === "unit") return t(out ? "call.state.ringing.unit_out" : "call.state.ringing.unit_in");
      return t(out ? "call.state.ringing.out" : "call.state.ringing.in");
    }
    const others = call.participants.filter((p) => p.side !== this.side);
    if (others.some((p) => p.state === "reconnecting")) return t("call.state.peer_reconnecting");
    if (this.link && this.link.state === "joining") return t("call.state.joining");
    return t("call.state.connected");
  }

  buttons(call) {
    const live = call && call.state !== "ended";
    const btn = (action, key, cls, onclick) => h(`button.btn.call-btn.${cls}`, { type: "button", dataset: { callAction: action }, onclick }, t(key));
    const out = [];
    if (!this.canAct) return out;
    const open = this.incident && this.incident.status !== "closed";
    if (this.link) {
      out.push(btn("hangup", "call.hangup", "btn-false", () => this.hangup()));
      out.push(btn("mute", this.link.muted ? "call.unmute" : "call.mute", "btn-secondary", () => this.toggleMute()));
      if (this.side === "command") {
        out.push(btn("switch_remote", "call.switch_remote", "btn-secondary", () => this.control("control", { action: "switch_camera" })));
        out.push(btn("snapshot", "call.snapshot", "btn-secondary", () => this.control("snapshot", {}, "call.snapshot.saved")));
      }
      if (this.side === "unit") out.push(btn("switch", "call.switch", "btn-secondary", () => this.link.switchCamera().catch((e) => toast(e.message))));
      return out;
    }
    if (live) {
      if (this.side === "agency") {
        out.push(btn("join", "call.join", "btn-primary", () => this.join(call.incident_id)));
        return out;
      }
      const ringsHere = call.state === "ringing" && (call.direction === "to_unit") === (this.side === "unit");
      const elsewhere = this.side === "unit" && call.participants.some((p) => p.side === "unit" && p.state !== "left" && p.device !== DEVICE);
      if (ringsHere || (call.state === "connected" && !elsewhere) || this.side === "command") {
        out.push(btn("answer", "call.answer", "btn-ack", () => this.join(call.incident_id)));
      }
      if (ringsHere) out.push(btn("hangup", "call.hangup", "btn-false", () => this.hangup()));
      return out;
    }
    if (open && this.side !== "agency") out.push(btn("start", "call.start", "btn-primary", () => this.start()));
    return out;
  }

  render() {
    const call = this.shown();
    // Unchanged (an event that changed nothing shown): the card stays as it is, so a button being pressed is not
    // replaced under the finger.
    const key = JSON.stringify([call, this.link && [this.link.state, this.link.muted, !!this.video.srcObject],
      this.incident, this.busy, getLang(), this.incoming().map((c) => c.id)]);
    if (key === this.renderedKey) return;
    this.renderedKey = key;
    const live = call && call.state !== "ended";
    const inCall = !!this.link;
    const ringsHere = live && !inCall && this.canAct && call.state === "ringing"
      && (call.direction === "to_unit") === (this.side === "unit");
    this.ringer.set(Boolean(ringsHere) || (!inCall && this.incoming().length > 0));
    this.root.dataset.callState = inCall ? this.link.state : live ? call.state : call ? "ended" : "idle";
    this.root.dataset.ringing = ringsHere ? "1" : "0";
    this.root.hidden = this.side === "agency" && !live && !inCall && !call;
    const elsewhere = this.side === "unit" && live && !inCall
      && call.participants.some((p) => p.side === "unit" && p.state !== "left" && p.device !== DEVICE);
    const failures = (call?.failures || []).map((f) => h("li.call-failure", { dataset: { reason: f.reason } },
      t("call.failure." + f.reason, { who: whoLabel(f) })));
    const showVideo = inCall || (live && this.side !== "unit");
    document.body.dataset.inCall = inCall ? "1" : "0"; // the console gives the call's column more room
    this.root.replaceChildren(...[ // (no nulls: replaceChildren would print them)
      h("div.call-head",
        h("h3", t("call.title")),
        this.label && call ? h("span.call-about", this.label(call)) : null,
        h("span.call-status", { dataset: { state: this.root.dataset.callState } }, this.statusText(call)),
        h("span.call-timer"),
        call && call.recording_on && live ? h("span.call-rec", t("call.recording")) : null),
      elsewhere ? h("p.call-note", t("call.elsewhere")) : null,
      this.side === "unit" && !call && this.canAct ? h("p.call-note", t("call.unit.hint")) : null,
      showVideo && inCall ? h("div.call-media", this.video, this.audio,
        this.side !== "unit" && !this.video.srcObject ? h("p.call-wait", t("call.no_video")) : null) : null,
      failures.length ? h("ul.call-failures", failures) : null,
      failures.length && live ? h("p.call-note", t("call.text_channel")) : null,
      h("div.call-actions", this.buttons(call)),
    ].filter(Boolean));
    if (inCall && this.video.srcObject) this.video.play().catch(() => {});
    this.paintTimer();
  }

  paintTimer() {
    const el = this.root.querySelector(".call-timer");
    if (!el) return;
    const call = this.shown();
    el.textContent = call && call.state === "connected" && call.connected_at
      ? fmtClock((now() - Date.parse(call.connected_at)) / 1000) : "";
  }
}
