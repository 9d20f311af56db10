"""Video benchmark: N RTSP cameras × K live viewers through the real camera layer.

    python bench/video.py                       # 8 cameras × 2 viewers, 1280×720 @ 10 fps, 60 s
    python bench/video.py --duration 600        # the 10-minute memory-growth run

Pieces (separate processes, like the real deployment):

* sources: per camera, a frame generator (here) pipes 1280×720 grey frames into
  `python -m ingest.cameras.testsrc` (ffmpeg → H.264 → RTSP on loopback). Each frame carries
  its creation time (ms, 32 bits) as two rows of black/white blocks: bits, then inverted bits;
* server: `bench/video.py --serve` runs an aiohttp app with console.video.setup_video (the
  CameraHub, encoders, evidence rings: the production code path);
* viewers (here): K MJPEG clients per camera (`/api/cameras/{id}/live.mjpeg`), each decoding
  the timestamp out of every JPEG it receives → glass-to-glass latency.

Reports: server CPU per camera, server memory (start/end), frames delivered vs produced, latency
p50/p95/max. Writes bench/out/video.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BLOCK = 40  # px per code block (1280 px / 32 bits)
BITS = 32
TICKS = os.sysconf("SC_CLK_TCK")


def stamp(frame: np.ndarray[Any, Any], ms: int) -> None:
    for i in range(BITS):
        bit = (ms >> (BITS - 1 - i)) & 1
        x = i * BLOCK
        frame[0:BLOCK, x : x + BLOCK] = 255 if bit else 0
        frame[BLOCK : 2 * BLOCK, x : x + BLOCK] = 0 if bit else 255


def read_stamp(jpeg: bytes, width: int) -> int | None:
    """Decode the stamp at 1/8 scale (libjpeg DCT scaling: cheap, like a browser decoding)."""
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if img is None:
        return None
    b = BLOCK * img.shape[1] / width  # block size in the decoded image
    ms = 0
    for i in range(BITS):
        cx = int((i + 0.5) * b)
        bit1, bit2 = img[int(0.5 * b), cx] > 128, img[int(1.5 * b), cx] > 128
        if bit1 == bit2:
            return None  # unreadable block
        ms = (ms << 1) | int(bit1)
    return ms


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Source:
    """Generator thread + RTSP camera process."""

    def __init__(self, idx: int, w: int, h: int, fps: float) -> None:
        self.idx, self.w, self.h, self.fps = idx, w, h, fps
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam{idx}"
        self.produced = 0
        self.stop = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ingest.cameras.testsrc", "--port", str(self.port), "--path", f"cam{idx}",
             "--", "-f", "rawvideo", "-pix_fmt", "gray", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if b"READY" not in line:
            raise RuntimeError(f"source {self.idx} failed")

    def _run(self) -> None:
        # A smooth scene with a few moving shapes: cheap for the camera-side encoder, so the
        # benchmark measures Firelink rather than eight x264 instances sharing its two cores.
        x = np.linspace(0, 1, self.w * 2, dtype=np.float32)
        y = np.linspace(0, 1, self.h, dtype=np.float32)[:, None]
        base = (60 + 80 * x[None, :] * (0.5 + y) + 10 * self.idx).clip(0, 255).astype(np.uint8)
        for k in range(6):
            cx = int((k + 0.5) * self.w / 3)
            cv2.circle(base, (cx, self.h // 2 + 80 * (k % 2)), 60 + 10 * k, 230 - 30 * k, -1)
        period = 1 / self.fps
        next_t = time.monotonic()
        n = 0
        assert self.proc.stdin is not None
        try:
            while not self.stop.is_set():
                shift = (n * 8) % self.w  # pan 8 px per frame
                frame = np.ascontiguousarray(base[:, shift : shift + self.w])
                stamp(frame, int(time.time() * 1000) & 0xFFFFFFFF)
                self.proc.stdin.write(frame.tobytes())
                self.proc.stdin.flush()
                self.produced += 1
                n += 1
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_t = time.monotonic()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        self.stop.set()
        try:
            os.killpg(self.proc.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait()


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its children (a source: relay + ffmpeg)."""
    total = 0.0
    try:
        total += proc_cpu_s(pid)
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return total
    return total + sum(tree_cpu_s(int(k)) for k in kids)


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def machine_busy() -> tuple[float, float]:
    vals = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = vals[3] + vals[4]
    return sum(vals) - idle, sum(vals)


class Viewer:
    def __init__(self, cam: str, width: int) -> None:
        self.cam = cam
        self.width = width
        self.frames = 0
        self.latencies: list[float] = []
        self.unreadable = 0
        self.measure = False

    async def run(self, session: aiohttp.ClientSession, base: str, query: str) -> None:
        async with session.get(f"{base}/api/cameras/{self.cam}/live.mjpeg{query}") as resp:
            boundary = b"--" + resp.headers["Content-Type"].split("boundary=")[1].encode()
            while True:
                line = (await resp.content.readline()).strip()
                if not line:
                    if resp.content.at_eof():
                        return
                    continue
                if line != boundary:
                    continue
                length = 0
                while (h := (await resp.content.readline()).strip()) != b"":
                    if h.lower().startswith(b"content-length"):
                        length = int(h.split(b":")[1])
                data = await resp.content.readexactly(length)
                now_ms = int(time.time() * 1000) & 0xFFFFFFFF
                if not self.measure:
                    continue
                self.frames += 1
                ms = read_stamp(data, self.width)
                if ms is None:
                    self.unreadable += 1
                else:
                    self.latencies.append(((now_ms - ms) & 0xFFFFFFFF) / 1000)


# ---------------- server side ----------------
def serve(port: int, cams: list[str], evidence: str) -> None:
    from aiohttp import web

    from config.cameras import VideoConfig
    from config.schema import FirelinkConfig
    from console.appkeys import BUS, CONFIG
    from console.routing import install
    from console.video import USER_KEY, setup_video
    from console.video import routes as video_routes
    from dispatch.actor import Actor
    from dispatch.events import EventBus

    @web.middleware
    async def login(request: web.Request, handler: Any) -> web.StreamResponse:
        request[USER_KEY] = Actor("bench", "duty_officer")  # where the console's identity middleware puts it
        resp: web.StreamResponse = await handler(request)
        return resp

    cfg = FirelinkConfig.model_validate(
        {"units": [{"id": "bench", "name": "bench"}],
         "cameras": [{"id": f"cam{i}", "unit_id": "bench", "name": f"cam{i}", "url": u} for i, u in enumerate(cams)]}
    )  # fmt: skip
    app = web.Application(middlewares=[login])
    app[CONFIG] = cfg
    app[BUS] = EventBus()
    setup_video(app, video=VideoConfig(), evidence_dir=evidence)
    install(app, video_routes)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


async def bench(a: argparse.Namespace) -> dict[str, Any]:
    sources = [Source(i, a.width, a.height, a.fps) for i in range(a.cameras)]
    for s in sources:
        s.wait_ready()
    port = free_port()
    evidence = ROOT / "bench" / "out" / "evidence"
    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", str(port), "--evidence", str(evidence), *[s.url for s in sources],
        cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    viewers = [Viewer(f"cam{i}", a.width) for i in range(a.cameras) for _ in range(a.viewers)]
    query = f"?w={a.view_width}" if a.view_width else ""
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            deadline = time.monotonic() + 30
            while True:  # wait for the server and all cameras online
                try:
                    async with session.get(f"{base}/api/cameras") as r:
                        cams = (await r.json())["cameras"]
                        if all(c["status"] == "online" for c in cams):
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("cameras did not come online")
                await asyncio.sleep(0.5)
            tasks = [asyncio.create_task(v.run(session, base, query)) for v in viewers]
            await asyncio.sleep(a.warmup)
            for v in viewers:
                v.measure = True
            produced0 = sum(s.produced for s in sources)
            cpu0, rss0, t0 = proc_cpu_s(server.pid), proc_rss_mb(server.pid), time.monotonic()
            busy0 = machine_busy()
            src0 = sum(tree_cpu_s(s.proc.pid) for s in sources)
            own0 = sum(os.times()[:2])
            load0 = os.getloadavg()[0]
            rss_samples = [rss0]
            while time.monotonic() - t0 < a.duration:
                await asyncio.sleep(max(0.1, min(10, a.duration - (time.monotonic() - t0))))
                rss_samples.append(proc_rss_mb(server.pid))
            for v in viewers:
                v.measure = False
            wall = time.monotonic() - t0
            cpu = proc_cpu_s(server.pid) - cpu0
            busy1 = machine_busy()
            src_cpu = sum(tree_cpu_s(s.proc.pid) for s in sources) - src0
            own_cpu = sum(os.times()[:2]) - own0
            load1 = os.getloadavg()[0]
            produced = sum(s.produced for s in sources) - produced0
            async with session.get(f"{base}/api/cameras") as r:
                cams = (await r.json())["cameras"]
            for t in tasks:
                t.cancel()
    finally:
        server.terminate()
        await server.wait()
        for s in sources:
            s.close()
    lat = sorted(x for v in viewers for x in v.latencies)
    delivered = sum(v.frames for v in viewers)
    q = statistics.quantiles(lat, n=100) if len(lat) > 2 else [float("nan")] * 99
    result = {
        "cameras": a.cameras,
        "viewers_per_camera": a.viewers,
        "source": f"{a.width}x{a.height}@{a.fps}",
        "view_width": a.view_width or a.width,
        "duration_s": round(wall, 1),
        "server_cpu_percent_total": round(100 * cpu / wall, 1),
        "server_cpu_percent_per_camera": round(100 * cpu / wall / a.cameras, 1),
        "machine_cpu_percent_all_processes": round(
            100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]) * (os.cpu_count() or 1), 1
        ),
        "sources_cpu_percent_total": round(100 * src_cpu / wall, 1),
        "viewers_and_generators_cpu_percent": round(100 * own_cpu / wall, 1),
        "loadavg_1m_start_end": [round(load0, 2), round(load1, 2)],
        "server_rss_mb_start": round(rss0, 1),
        "server_rss_mb_end": round(rss_samples[-1], 1),
        "server_rss_mb_max": round(max(rss_samples), 1),
        "frames_produced": produced,
        "frames_delivered": delivered,
        "delivered_ratio": round(delivered / max(1, produced * a.viewers), 3),
        "unreadable_stamps": sum(v.unreadable for v in viewers),
        "latency_s": {"p50": round(q[49], 3), "p95": round(q[94], 3), "max": round(lat[-1], 3) if lat else None},
        "camera_fps": [c["fps"] for c in cams],
        "camera_status": [c["status"] for c in cams],
        "cpu_count": os.cpu_count(),
    }
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cameras", type=int, default=8)
    p.add_argument("--viewers", type=int, default=2, help="viewers per camera")
    p.add_argument("--width", type=int, default=1280)
    p.add_argument("--height", type=int, default=720)
    p.add_argument("--fps", type=float, default=10)
    p.add_argument("--view-width", type=int, default=0, help="?w= for viewers (0: full size)")
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--warmup", type=float, default=15, help="s before measuring (evidence rings fill: pre_s + 2)")
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--evidence", help=argparse.SUPPRESS)
    p.add_argument("urls", nargs="*", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        serve(a.serve, a.urls, a.evidence)
        return 0
    result = asyncio.run(bench(a))
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "video.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
