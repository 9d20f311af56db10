"""Alarm → sound in the browser: MQTT publish of an alarm to the first oscillator start in Chromium.

    .venv/bin/python bench/alarm_to_sound.py                      # 20 alarms, officer console (/)
    .venv/bin/python bench/alarm_to_sound.py --alarms 40 --page /video.html

What runs (all real, on loopback): Mosquitto from deploy/mosquitto/firelink.conf on a free port; `firelink run`
as a subprocess (SQLite); Debian Chromium (headless, Playwright) with the command-room kiosk setting
`--autoplay-policy=no-user-gesture-required`, logged in as a duty officer on --page; a paho client publishing
one alarm at a time (QoS 1) for a unit with no open incident.

Measured per alarm: the wall-clock time just before paho's publish → the first `OscillatorNode.start()` of
the alarm pattern (880 Hz) in the page (`performance.timeOrigin + performance.now()`, same machine clock).
Each alarm is then acknowledged through the API and the next one is published only once the page is silent,
so every measured start is the first of a new alarm. Sound leaves the speakers later by the audio output
latency (the AudioContext's baseLatency + outputLatency, printed too).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from alarm_latency import core_config, free_port, launch_core, pct, start_broker, wait_healthy

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]

PROBE = """
(() => {
  window.__starts = [];
  const base = (window.BaseAudioContext || window.AudioContext).prototype;
  const createOscillator = base.createOscillator;
  base.createOscillator = function (...a) {
    const osc = createOscillator.apply(this, a);
    const ctx = this;
    const start = osc.start;
    osc.start = function (...b) {
      window.__starts.push({ at: performance.timeOrigin + performance.now(), freq: osc.frequency.value,
                             latency: (ctx.baseLatency || 0) + (ctx.outputLatency || 0) });
      return start.apply(this, b);
    };
    return osc;
  };
})();
"""


async def run(args: argparse.Namespace) -> int:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from playwright.async_api import async_playwright

    workdir = Path(tempfile.mkdtemp(prefix="firelink-bench-sound-"))
    broker, broker_port = start_broker(workdir)
    cfg = core_config(workdir, broker_port, args.warmup + args.alarms, None, f"http://127.0.0.1:{free_port()}/hook")
    cfg["agencies"]["fire"]["webhooks"] = []
    cfg["agencies"]["medical"]["webhooks"] = []
    prefix = cfg["mqtt"]["topic_prefix"]
    base = f"http://127.0.0.1:{cfg['console']['port']}"
    core, log = launch_core(workdir, cfg, None)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-snd-{uuid.uuid4().hex[:8]}")
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
            await wait_healthy(http, base, core, workdir / "core.log", 60)
            async with http.post(base + "/api/login", json={"username": "bench", "password": "bench-pw"}) as r:
                csrf = (await r.json())["csrf_token"]
            client.connect("127.0.0.1", broker_port)
            client.loop_start()

            async with async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                ctx = await browser.new_context(viewport={"width": 1600, "height": 900}, locale="zh-CN")
                await ctx.add_init_script(PROBE)
                page = await ctx.new_page()
                await page.goto(base + "/login.html")
                await page.fill("#username", "bench")
                await page.fill("#password", "bench-pw")
                await page.click("#login-submit")
                await page.wait_for_function("() => !location.pathname.startsWith('/login')")
                if args.page != "/":
                    await page.goto(base + args.page)
                await page.wait_for_function("() => document.body.dataset.alertsLive === '1'", timeout=30_000)
                await page.wait_for_function("() => document.body.dataset.sound === 'on'")

                delays: list[float] = []
                latency = 0.0
                for n in range(args.warmup + args.alarms):
                    unit = f"u{n:05d}"
                    body = json.dumps({"alarm_id": f"snd-{uuid.uuid4().hex}", "kind": "smoke"})
                    t_pub = time.time() * 1000
                    client.publish(f"{prefix}/units/{unit}/alarm", body, qos=1)
                    first = await page.wait_for_function(
                        "(t) => { const s = __starts.find((x) => x.at >= t && x.freq === 880); return s || null; }",
                        arg=t_pub, timeout=20_000)
                    start: dict[str, Any] = await first.json_value()
                    if n >= args.warmup:
                        delays.append(start["at"] - t_pub)
                    latency = start["latency"]
                    async with http.get(base + "/api/incidents?state=open") as r:
                        incidents = await r.json()
                    for inc in incidents:
                        if inc["status"] == "new":
                            async with http.post(f"{base}/api/incidents/{inc['id']}/ack",
                                                 headers={"X-CSRF-Token": csrf}) as r:
                                r.raise_for_status()
                    await page.wait_for_function("() => document.body.dataset.alert === 'off'")
                    await asyncio.sleep(args.gap)  # spacing between alarms, not synchronisation
                await browser.close()
    finally:
        with contextlib.suppress(Exception):
            client.loop_stop()
            client.disconnect()
        core.terminate()
        with contextlib.suppress(Exception):
            core.wait(15)
        log.close()
        broker.terminate()
        broker.wait(10)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    return report(args, delays, latency)


def report(args: argparse.Namespace, delays: list[float], latency: float) -> int:
    print(f"alarm → first oscillator start in Chromium ({args.page}, {len(delays)} alarms, SQLite, kiosk flag):")
    print(f"  p50 {pct(delays, 50):.1f} ms   p95 {pct(delays, 95):.1f} ms   max {max(delays):.1f} ms   "
          f"mean {statistics.fmean(delays):.1f} ms")
    print("  sorted (ms): " + " ".join(f"{d:.0f}" for d in sorted(delays)))
    print(f"  audio output latency reported by the AudioContext: {latency * 1000:.1f} ms (headless: no device)")
    if args.json:
        Path(args.json).write_text(json.dumps({"page": args.page, "delays_ms": delays}))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alarms", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=1, help="alarms before measuring (first page/incident work)")
    ap.add_argument("--page", default="/", help="officer page to measure on: /, /video.html, /hazards.html")
    ap.add_argument("--gap", type=float, default=0.3, help="seconds between alarms once the page is silent")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (core.log, database)")
    ap.add_argument("--json", help="write the per-alarm delays here")
    return asyncio.run(run(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
