"""Live calls (issue 15): set-up time, glass-to-glass video latency, CPU per call and recorded calls at once.

    .venv/bin/python bench/calls.py                         # browser part (3 calls) + load part (1, 4, 8 calls)
    .venv/bin/python bench/calls.py --calls 3 --load 1,4,8,10 --seconds 15
    .venv/bin/python bench/calls.py --skip-browser          # only the load part

What runs (all real, on loopback): Mosquitto from deploy/mosquitto/firelink.conf; `firelink run` as a subprocess
(SQLite, calls recorded as in production); then

1. Browser part — Debian Chromium (Playwright) with fake devices: the officer's console and the unit's phone page.
   The phone's camera is replaced (init script) by a canvas that writes the wall-clock time into each frame as a
   row of black/white blocks; the phone answers as soon as it rings (a script clicks 接听: no human reaction time).
   * set-up: the officer presses 通话 → the first frame of the phone's video shown in the console's <video> and
     audio energy received (both measured in the console page on its clock);
   * glass-to-glass: for every frame the console's <video> presents (requestVideoFrameCallback), now − the time
     written in it (phone canvas → Chromium VP8 → server forwards it as it is → console decode → presented);
   * CPU of the core process during the connected call (one call, recorded).
2. Load part — N concurrent recorded calls, each between a phone and an officer played by aiortc peers in this
   process (the phone sends 640×480 VP8 at 20 fps pre-encoded, so the client side spends no encoder time, and a
   tone; the officer sends a tone and counts the phone's video frames without decoding them). The core's CPU (all
   its threads) over a steady window gives CPU per call; each officer's received frame rate and each recording's
   length show whether the calls held. Clients share the same 2 cores, so the figures are pessimistic for the
   server.

Targets (issue 15): set-up < 2 s, latency < 400 ms on loopback, ≥ 8 concurrent recorded calls on 2 cores.
Prints figures; exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from alarm_latency import (
    ROOT,
    core_config,
    cpu_seconds,
    free_port,
    launch_core,
    pct,
    shut_down,
    start_broker,
    wait_healthy,
)

sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PHONE_FPS = 20

# The phone's camera: a canvas stamped with Date.now() (44 bits, 16-px blocks, 40 per row) at 30 fps, plus the
# fake microphone; and it answers the moment it rings.
PHONE = """
(() => {
  const W = 640, H = 480, B = 16, BITS = 44, PER_ROW = W / B;
  const orig = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async (c) => {
    const mic = c.audio ? await orig({ audio: c.audio }) : null;
    if (!c.video) return mic;
    const canvas = document.createElement("canvas");
    canvas.width = W; canvas.height = H;
    const g = canvas.getContext("2d");
    const draw = () => {
      const ms = Date.now();
      g.fillStyle = "#606060"; g.fillRect(0, 0, W, H);
      g.fillStyle = "#c8c8c8"; g.fillRect((ms / 4) % (W - 60), H / 2, 60, 60);
      for (let b = 0; b < BITS; b++) {
        const bit = Math.floor(ms / 2 ** (BITS - 1 - b)) % 2;
        g.fillStyle = bit ? "#ffffff" : "#000000";
        g.fillRect((b % PER_ROW) * B, Math.floor(b / PER_ROW) * B, B, B);
      }
      g.fillStyle = "#ffffff"; g.font = "32px monospace";
      g.fillText(new Date(ms).toISOString().slice(11, 23), 20, 110);
    };
    draw();
    setInterval(draw, 1000 / 30);
    const stream = canvas.captureStream(30);
    for (const t of mic ? mic.getAudioTracks() : []) stream.addTrack(t);
    return stream;
  };
  new MutationObserver(() => {
    const zone = document.getElementById("call-zone");
    const answer = zone && zone.dataset.ringing === "1" && zone.querySelector("[data-call-action=answer]");
    if (answer && !answer.dataset.clicked) { answer.dataset.clicked = "1"; answer.click(); }
  }).observe(document, { subtree: true, childList: true, attributes: true });
})();
"""

# In the console: the first frame shown and the first audio received after `t0`, then the stamp of every frame.
CONSOLE_PROBE = """
(t0) => {
  window.__probe = { t0, firstFrame: null, firstAudio: null, lat: [] };
  const p = window.__probe;
  const canvas = document.createElement("canvas");
  const g = canvas.getContext("2d", { willReadFrequently: true });
  const read = (v) => {
    canvas.width = v.videoWidth; canvas.height = v.videoHeight;
    g.drawImage(v, 0, 0);
    const scale = v.videoWidth / 640;
    let ms = 0;
    for (let b = 0; b < 44; b++) {
      const x = Math.floor(((b % 40) + 0.5) * 16 * scale), y = Math.floor((Math.floor(b / 40) + 0.5) * 16 * scale);
      ms = ms * 2 + (g.getImageData(x, y, 1, 1).data[0] > 128 ? 1 : 0);
    }
    return ms;
  };
  const watch = () => {
    const v = document.querySelector("#call-panel video");
    if (!v) { setTimeout(watch, 5); return; }
    const step = () => {
      const now = Date.now();
      if (p.firstFrame === null) p.firstFrame = now;
      const ms = read(v);
      if (Math.abs(now - ms) < 10000) p.lat.push(now - ms);
      v.requestVideoFrameCallback(step);
    };
    v.requestVideoFrameCallback(step);
  };
  watch();
  const audio = async () => {
    const link = window.firelinkCall;
    if (link && link.pc && (await link.stats()).audioIn > 0) { p.firstAudio = Date.now(); return; }
    setTimeout(audio, 20);
  };
  audio();
}
"""


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its descendants (the core and its call media workers), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
    family, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in family and child not in family:
                family.add(child)
                grew = True
    return sum(cpu_seconds(p) for p in family)


def bench_config(workdir: Path, broker_port: int, units: int, calls: dict[str, Any]) -> dict[str, Any]:
    cfg = core_config(workdir, broker_port, units, None, f"http://127.0.0.1:{free_port()}/hook")
    for agency in cfg["agencies"].values():
        agency["webhooks"] = []
    cfg["users"] += [{"username": f"unit{i}", "password": "unit-pw", "role": "unit", "unit_id": f"u{i:05d}"}
                     for i in range(units)]
    cfg["video"] = {"evidence_dir": str(workdir / "evidence")}
    cfg["calls"] = {"max_calls": max(16, units), "ring_timeout_s": 120, **calls}
    return cfg


class Session:
    """A logged-in API client (cookie + CSRF)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf = ""

    async def login(self, user: str, password: str) -> Session:
        async with self.http.post(self.base + "/api/login", json={"username": user, "password": password}) as r:
            self.csrf = (await r.json())["csrf_token"]
        return self

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        async with self.http.request(method, self.base + path, json=body,
                                     headers={"X-CSRF-Token": self.csrf}) as r:
            data = await r.json()
            if r.status >= 400:
                raise RuntimeError(f"{method} {path}: {r.status} {data}")
            return data

    async def close(self) -> None:
        await self.http.close()


async def open_incident(officer: Session, unit: str) -> int:
    await officer.call("POST", f"/api/units/{unit}/alarm", {"kind": "one_key"})
    incidents = await officer.call("GET", "/api/incidents?state=open&limit=1000")
    return int(next(i["id"] for i in incidents if i["unit_id"] == unit))


async def wait_call(officer: Session, inc: int, state: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        call = (await officer.call("GET", f"/api/incidents/{inc}/call"))["call"]
        if call and call["state"] == state and (state != "ended" or call.get("recording") or not call["recording_on"]):
            return dict(call)
        if time.monotonic() > deadline:
            raise RuntimeError(f"call of incident {inc} not {state}: {call}")
        await asyncio.sleep(0.1)  # another process: nothing to await but its answer


# ---------------------------------------------------------------- 1. browser


async def browser_part(base: str, core_pid: int, calls: int, seconds: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    officer = await Session(base).login("bench", "bench-pw")
    setups: list[float] = []
    audio_setups: list[float] = []
    latencies: list[float] = []
    cpu_pct: list[float] = []
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            for n in range(calls):
                unit = f"u{n:05d}"
                inc = await open_incident(officer, unit)
                phone_ctx = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
                await phone_ctx.add_init_script(PHONE)
                phone = await phone_ctx.new_page()
                await login_page(phone, base, f"unit{n}", "unit-pw")
                console_ctx = await browser.new_context(viewport={"width": 1600, "height": 900})
                console = await console_ctx.new_page()
                await login_page(console, base, "bench", "bench-pw")
                await console.goto(f"{base}/#incident/{inc}")
                await console.wait_for_selector("#call-panel [data-call-action=start]")
                await phone.wait_for_function("() => document.querySelector('#ws-state')?.dataset.online === '1'")
                t0 = await console.evaluate("() => Date.now()")
                await console.evaluate(CONSOLE_PROBE, t0)
                await console.click("#call-panel [data-call-action=start]")
                await console.wait_for_function(
                    "() => window.__probe.firstFrame !== null && window.__probe.firstAudio !== null", timeout=30_000)
                probe = await console.evaluate("() => window.__probe")
                setups.append((probe["firstFrame"] - t0) / 1000)
                audio_setups.append((probe["firstAudio"] - t0) / 1000)
                await console.evaluate("() => { window.__probe.lat = []; }")
                c0, w0 = tree_cpu(core_pid), time.monotonic()
                await asyncio.sleep(seconds)  # the call runs: frames are stamped and read back meanwhile
                cpu_pct.append(100 * (tree_cpu(core_pid) - c0) / (time.monotonic() - w0))
                latencies += await console.evaluate("() => window.__probe.lat")
                await console.click("#call-panel [data-call-action=hangup]")
                await wait_call(officer, inc, "ended")
                await officer.call("POST", f"/api/incidents/{inc}/close", {"outcome": "resolved", "note": ""})
                await phone_ctx.close()
                await console_ctx.close()
        finally:
            await browser.close()
            await officer.close()
    return {"setup_s": setups, "audio_setup_s": audio_setups, "latency_ms": latencies, "cpu_pct": cpu_pct}


async def login_page(page: Any, base: str, user: str, password: str) -> None:
    await page.goto(base + "/login.html")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("#login-submit")
    await page.wait_for_function("() => !location.pathname.startsWith('/login')")


# ---------------------------------------------------------------- 2. load


def phone_clip(path: Path, seconds: int = 10) -> Path:
    """A VP8 WebM of moving stamped frames the load part's phones send as they are (no encoding per call)."""
    import av

    from ingest.calls.testsrc import stamp_frame

    with av.open(str(path), "w", format="webm") as out:
        s = out.add_stream("libvpx", rate=PHONE_FPS)
        s.width, s.height, s.pix_fmt = 640, 480, "yuv420p"
        s.bit_rate = 800_000
        s.codec_context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "g": str(PHONE_FPS)}
        for n in range(seconds * PHONE_FPS):
            frame = stamp_frame(640, 480, 1_700_000_000_000 + n * 50, n)
            frame.pts, frame.time_base = n, fractions.Fraction(1, PHONE_FPS)
            out.mux(s.encode(frame))
        out.mux(s.encode(None))
    return path


async def load_part(base: str, core_pid: int, counts: list[int], seconds: float, workdir: Path,
                    first_unit: int) -> list[dict[str, Any]]:
    from ingest.calls.testsrc import ClientPeer, EncodedVideo, ToneTrack

    clip = phone_clip(workdir / "phone.webm")
    officer = await Session(base).login("bench", "bench-pw")
    results = []
    unit_no = first_unit
    try:
        for count in counts:
            units = list(range(unit_no, unit_no + count))
            unit_no += count
            phones: list[ClientPeer] = []
            desks: list[ClientPeer] = []
            sessions: list[Session] = []
            incs: list[int] = []
            idle0, t_idle = tree_cpu(core_pid), time.monotonic()
            await asyncio.sleep(2)
            idle_pct = 100 * (tree_cpu(core_pid) - idle0) / (time.monotonic() - t_idle)
            try:
                for n in units:
                    inc = await open_incident(officer, f"u{n:05d}")
                    incs.append(inc)
                    await officer.call("POST", f"/api/incidents/{inc}/call")
                    desk = ClientPeer(audio=ToneTrack(880), receive_video=True, decode_video=False)
                    desks.append(desk)
                    answer = await officer.call("POST", f"/api/incidents/{inc}/call/join", {"sdp": await desk.offer()})
                    await desk.accept(answer["sdp"])
                    unit = await Session(base).login(f"unit{n}", "unit-pw")
                    sessions.append(unit)
                    cell = ClientPeer(audio=ToneTrack(440), video=EncodedVideo(str(clip), PHONE_FPS))
                    phones.append(cell)
                    answer = await unit.call("POST", f"/api/incidents/{inc}/call/join", {"sdp": await cell.offer()})
                    await cell.accept(answer["sdp"])
                for inc in incs:
                    await wait_call(officer, inc, "connected")
                await asyncio.sleep(3)  # settle (bitrate ramp-up), then measure
                frames0 = [d.received.video_frames for d in desks]
                audio0 = [d.received.audio_frames for d in desks]
                c0, w0 = tree_cpu(core_pid), time.monotonic()
                me0 = time.process_time()
                await asyncio.sleep(seconds)
                window = time.monotonic() - w0
                core_pct = 100 * (tree_cpu(core_pid) - c0) / window
                client_pct = 100 * (time.process_time() - me0) / window
                fps = [(d.received.video_frames - f) / window for d, f in zip(desks, frames0, strict=True)]
                audio_fps = [(d.received.audio_frames - a) / window for d, a in zip(desks, audio0, strict=True)]
                ended = []
                for inc in incs:
                    with contextlib.suppress(RuntimeError):  # (a call that ended by itself: its reason is shown)
                        await officer.call("POST", f"/api/incidents/{inc}/call/hangup")
                for inc in incs:
                    ended.append(await wait_call(officer, inc, "ended", timeout=60))
                    await officer.call("POST", f"/api/incidents/{inc}/close", {"outcome": "resolved", "note": ""})
                recorded = [c["recording"]["duration_s"] / c["duration_s"] for c in ended
                            if c.get("duration_s") and c.get("recording")]
                reasons = sorted({c["reason"] for c in ended})
                results.append({"calls": count, "core_pct": core_pct, "idle_pct": idle_pct, "client_pct": client_pct,
                                "fps": fps, "audio_fps": audio_fps, "recorded": recorded, "reasons": reasons,
                                "load": os.getloadavg()[0]})
            finally:
                for peer in phones + desks:
                    with contextlib.suppress(Exception):
                        await peer.close()
                for s in sessions:
                    await s.close()
    finally:
        await officer.close()
    return results


# ---------------------------------------------------------------- main


def report(browser: dict[str, Any] | None, load: list[dict[str, Any]]) -> int:
    ok = True
    print(f"\nLive calls (issue 15) — this machine, loopback, calls recorded; load average now "
          f"{os.getloadavg()[0]:.1f}")
    if browser:
        setup, audio, lat = browser["setup_s"], browser["audio_setup_s"], browser["latency_ms"]
        worst = max(setup)
        print(f"  set-up, press 通话 → phone video shown at the console: median {statistics.median(setup):.2f} s, "
              f"worst {worst:.2f} s over {len(setup)} calls (target < 2 s; each: "
              f"{', '.join(f'{x:.2f}' for x in setup)} s — the first starts the media processes); audio received: "
              f"median {statistics.median(audio):.2f} s")
        if lat:
            p50, p95 = pct(lat, 50), pct(lat, 95)
            print(f"  glass-to-glass video latency: p50 {p50:.0f} ms, p95 {p95:.0f} ms, max {max(lat):.0f} ms over "
                  f"{len(lat)} frames (target < 400 ms)")
        else:
            print("  glass-to-glass video latency: no stamped frame read back")
        print(f"  core CPU during one browser call: {statistics.mean(browser['cpu_pct']):.0f} % of one core")
        ok &= worst < 2.0 and bool(lat) and pct(lat, 50) < 400
    for r in load:
        n = r["calls"]
        per_call = (r["core_pct"] - r["idle_pct"]) / n
        fps = r["fps"]
        print(f"  {n:>2} concurrent recorded calls: core {r['core_pct']:.0f} % of one core (idle {r['idle_pct']:.0f} %,"
              f" {per_call:.1f} % per call), clients {r['client_pct']:.0f} %; officer video fps min "
              f"{min(fps):.1f} / median {statistics.median(fps):.1f} (phones send {PHONE_FPS}); audio frames/s min "
              f"{min(r['audio_fps']):.0f} (50 expected); recordings {len(r['recorded'])}/{n}, length/call "
              f"{min(r['recorded'], default=0):.2f}–{max(r['recorded'], default=0):.2f}; ended: "
              f"{', '.join(r['reasons'])}; load average {r['load']:.1f}")
    if load:
        def held(r: dict[str, Any]) -> bool:
            return min(r["fps"]) >= 0.9 * PHONE_FPS and min(r["audio_fps"]) >= 45 \
                and len(r["recorded"]) == r["calls"] and r["reasons"] == ["hangup"]

        kept = [r for r in load if held(r)]
        basis = kept[-1] if kept else load[0]  # a step whose media held measures what a call costs
        per_call = max(0.1, (basis["core_pct"] - basis["idle_pct"]) / basis["calls"])
        capacity = int(200 / per_call)
        print(f"  → {per_call:.1f} % of a core per recorded call (at {basis['calls']} calls, media held: "
              f"{'yes' if held(basis) else 'no'}): 2 cores carry about {capacity} calls with nothing else running "
              f"(target ≥ 8)")
        eight = [r for r in load if r["calls"] >= 8]
        for r in eight:
            print(f"  {r['calls']} calls at once {'held' if held(r) else 'did NOT hold'} on this machine "
                  f"(load average {r['load']:.1f} with the other work on its 2 cores)")
        ok &= capacity >= 8 and all(held(r) for r in eight)
    return 0 if ok else 1


async def run(args: argparse.Namespace) -> int:
    counts = [int(x) for x in args.load.split(",") if x] if args.load else []
    units = (0 if args.skip_browser else args.calls) + sum(counts)
    workdir = Path(tempfile.mkdtemp(prefix="firelink-bench-calls-"))
    broker, broker_port = start_broker(workdir)
    extra: dict[str, Any] = {"record": not args.no_record}
    cfg = bench_config(workdir, broker_port, max(units, 1), extra)
    base = f"http://127.0.0.1:{cfg['console']['port']}"
    core, log = launch_core(workdir, cfg, None)
    try:
        async with aiohttp.ClientSession() as http:
            await wait_healthy(http, base, core, workdir / "core.log", 90)
        browser = None
        if not args.skip_browser:
            if not shutil.which(CHROMIUM):
                print(f"  (no Chromium at {CHROMIUM}: browser part skipped)")
            else:
                browser = await browser_part(base, core.pid, args.calls, args.seconds)
        load = await load_part(base, core.pid, counts, args.seconds, workdir,
                               0 if args.skip_browser else args.calls) if counts else []
        return report(browser, load)
    finally:
        shut_down(core, log, broker, workdir, args.keep)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=3, help="browser calls (set-up and latency)")
    ap.add_argument("--load", default="1,4,8", help="concurrent call counts for the load part, e.g. 1,4,8,10")
    ap.add_argument("--seconds", type=float, default=12.0, help="measured window per call / per load step")
    ap.add_argument("--skip-browser", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (core log, recordings)")
    ap.add_argument("--no-record", action="store_true", help="calls not recorded (what recording costs)")
    return asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
