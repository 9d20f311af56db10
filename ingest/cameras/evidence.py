"""Incident evidence: a snapshot per camera at alarm time and a clip around it.

Each camera keeps a ring of recent JPEG frames (from its evidence encoder,
shared with live viewers of the same width). When an incident opens, the
recorder takes, per camera of the incident's unit:

* ``{camera}-snapshot.jpg``: the frame nearest to the alarm time;
* ``{camera}-clip.mp4``: frames from ``pre_s`` before to ``post_s`` after the
  alarm, encoded to H.264 (yuv420p, +faststart) by an ffmpeg subprocess,
  so Chromium's <video> plays it.

Files live in ``{evidence_dir}/incident-{id}/`` with a ``manifest.json``
listing each file's SHA-256. Retention: folders older than
``retention_days`` are deleted unless put on hold (a hazard or penalty case)
or kept longer (``keep_until``: a call recording is kept at least 6 months).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.cameras import VideoConfig
from ingest.cameras.hub import CameraHub, CameraStream, EncodedFrame
from ingest.integrity import confined, sha256_file, write_confined

log = logging.getLogger(__name__)

RecordFn = Callable[[int, str, dict[str, Any]], Awaitable[None]]
MANIFEST = "manifest.json"


def parse_time(value: str | float | None) -> float:
    if value is None:
        return time.time()
    if isinstance(value, int | float):
        return float(value)
    dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


class FrameRing:
    """Recent encoded frames of one camera, by time; collectors receive new frames as they come."""

    def __init__(self, keep_s: float) -> None:
        self.keep_s = keep_s
        self.frames: deque[EncodedFrame] = deque()
        self.collectors: list[list[EncodedFrame]] = []
        self._waiters: list[asyncio.Future[None]] = []

    async def next_frame(self) -> None:
        """Return once the next frame has been added."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(fut)

    def add(self, frame: EncodedFrame) -> None:
        self.frames.append(frame)
        for w in self._waiters:
            if not w.done():
                w.set_result(None)
        cutoff = frame.ts - self.keep_s
        while self.frames and self.frames[0].ts < cutoff:
            self.frames.popleft()
        for c in self.collectors:
            c.append(frame)

    def since(self, ts: float) -> list[EncodedFrame]:
        return [f for f in self.frames if f.ts >= ts]

    def nearest(self, ts: float) -> EncodedFrame | None:
        if not self.frames:
            return None
        return min(self.frames, key=lambda f: abs(f.ts - ts))


@dataclass
class EvidenceFile:
    file: str  # path relative to the evidence folder: incident-{id}/{name}
    kind: str  # snapshot | clip
    camera_id: str
    sha256: str
    bytes: int
    start: float | None = None
    end: float | None = None
    frames: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "kind": self.kind,
            "camera_id": self.camera_id,
            "sha256": self.sha256,
            "bytes": self.bytes,
            "start": self.start,
            "end": self.end,
            "frames": self.frames,
        }


class EvidenceStore:
    """The evidence folder: manifests, lookup, retention."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def incident_dir(self, incident_id: int) -> Path:
        return self.root / f"incident-{int(incident_id)}"

    def manifest(self, incident_id: int) -> dict[str, Any] | None:
        p = self.incident_dir(incident_id) / MANIFEST
        try:
            data: dict[str, Any] = json.loads(p.read_text())
            return data
        except (OSError, ValueError):
            return None

    def write_manifest(self, incident_id: int, data: dict[str, Any]) -> None:
        write_confined(self.incident_dir(incident_id), MANIFEST,
                       json.dumps(data, ensure_ascii=False, indent=1).encode())

    def add_file(self, incident_id: int, base: dict[str, Any], ef: EvidenceFile) -> None:
        data = self.manifest(incident_id) or dict(base, files=[])
        data["files"] = [f for f in data["files"] if f["file"] != ef.file] + [ef.to_json()]
        self.write_manifest(incident_id, data)

    def resolve(self, rel: str) -> Path | None:
        """A stored evidence file by its relative name, or None (rejects anything outside the folder)."""
        parts = rel.split("/")
        if len(parts) != 2 or not parts[0].startswith("incident-") or parts[1] == MANIFEST:
            return None
        try:
            confined(confined(self.root, parts[0]), parts[1])
        except ValueError:
            return None
        p = self.root / parts[0] / parts[1]
        return p if p.is_file() else None

    def listed_sha256(self, rel: str) -> str | None:
        """The SHA-256 the incident's manifest lists for `rel` (incident-{id}/{name}), or None."""
        try:
            incident_id = int(rel.split("/")[0].removeprefix("incident-"))
        except ValueError:
            return None
        files = (self.manifest(incident_id) or {}).get("files", [])
        found = [f.get("sha256") for f in files if isinstance(f, dict) and f.get("file") == rel]
        return str(found[-1]) if found and found[-1] else None

    def keep_until(self, incident_id: int, until: float) -> None:
        """Keep the incident's folder at least until `until` (epoch seconds), whatever the retention period."""
        data = self.manifest(incident_id)
        if data is not None and float(data.get("keep_until") or 0) < until:
            data["keep_until"] = until
            self.write_manifest(incident_id, data)

    def set_hold(self, incident_id: int, hold: bool, reason: str = "") -> bool:
        """Keep (or release) an incident's evidence beyond retention, e.g. while a case is open."""
        data = self.manifest(incident_id)
        if data is None:
            return False
        data["hold"] = hold
        data["hold_reason"] = reason
        self.write_manifest(incident_id, data)
        return True

    def purge(self, retention_days: float, now: float | None = None) -> list[int]:
        """Delete incident folders older than the retention period and not on hold (blocking)."""
        now = time.time() if now is None else now
        cutoff = now - retention_days * 86400
        removed: list[int] = []
        if not self.root.is_dir():
            return removed
        for d in self.root.iterdir():
            if not (d.is_dir() and d.name.startswith("incident-")):
                continue
            data = None
            with contextlib.suppress(OSError, ValueError):
                data = json.loads((d / MANIFEST).read_text())
            created = float(data.get("created", 0)) if data else d.stat().st_mtime
            if data and (data.get("hold") or float(data.get("keep_until") or 0) > now):
                continue
            if created < cutoff:
                shutil.rmtree(d, ignore_errors=True)
                with contextlib.suppress(ValueError):
                    removed.append(int(d.name.removeprefix("incident-")))
        if removed:
            log.info("evidence retention: deleted %d incident folder(s)", len(removed))
        return removed


async def encode_clip(frames: Sequence[EncodedFrame], out: Path, crf: int) -> None:
    """JPEG frames → H.264 MP4 (yuv420p, faststart) with ffmpeg, at the frames' average rate."""
    if not frames:
        raise ValueError("no frames")
    span = frames[-1].ts - frames[0].ts
    fps = (len(frames) - 1) / span if len(frames) > 1 and span > 0 else 1.0
    fps = min(max(fps, 0.5), 60.0)
    tmp = out.with_suffix(".part.mp4")
    cmd = [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "image2pipe", "-c:v", "mjpeg", "-framerate", f"{fps:.3f}", "-i", "-",
        "-vf", "scale=trunc(iw/2)*2:trunc(ih/2)*2,format=yuv420p",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-profile:v", "high",
        "-movflags", "+faststart", "-f", "mp4", str(tmp),
    ]  # fmt: skip
    if shutil.which("nice"):
        cmd = ["nice", "-n", "10", *cmd]  # evidence must not starve the live view
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdin is not None
    try:
        for f in frames:
            proc.stdin.write(f.data)
            await proc.stdin.drain()
        proc.stdin.close()
        _, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        tmp.unlink(missing_ok=True)
        raise
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed ({proc.returncode}): {err.decode(errors='replace')[-300:]}")
    tmp.replace(out)


class EvidenceRecorder:
    """Keeps the rings of all cameras and records evidence for incidents."""

    def __init__(
        self, hub: CameraHub, video: VideoConfig | None = None, *, root: str | os.PathLike[str] | None = None,
        record: RecordFn | None = None,
    ) -> None:  # fmt: skip
        self.hub = hub
        self.video = video or hub.video
        self.store = EvidenceStore(root if root is not None else self.video.evidence_dir)
        self.record = record
        self.rings: dict[str, FrameRing] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._active: dict[int, asyncio.Task[list[EvidenceFile]]] = {}
        self._finished: dict[int, asyncio.Future[list[EvidenceFile]]] = {}
        self._stopping = asyncio.Event()
        self._manifest_lock = asyncio.Lock()

    # ---- rings ----
    def start(self) -> None:
        for s in self.hub.streams.values():
            self.rings[s.id] = FrameRing(self.video.pre_s + 2.0)
            if s.frames.value is not None:
                self._attach(s)
            else:
                s.on_first_frame.append(self._attach)

    def _attach(self, s: CameraStream) -> None:
        if s.evidence_channel is not None:
            return
        ch = s.channel(self.video.evidence_max_width)
        s.evidence_channel = ch
        ch.acquire()
        self._spawn(self._feed(s.id, ch.out))

    async def _feed(self, camera_id: str, out: Any) -> None:
        ring = self.rings[camera_id]
        seq = 0
        while True:
            got = await out.wait_newer(seq)
            if got is None:
                return
            seq, frame = got
            ring.add(frame)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    async def stop(self) -> None:
        """Finish recordings in progress early (clips end now), then stop feeding the rings."""
        self._stopping.set()
        if self._active:
            await asyncio.wait(list(self._active.values()), timeout=30)
        for t in list(self._tasks):
            t.cancel()
        for s in self.hub.streams.values():
            if s.evidence_channel is not None:
                s.evidence_channel.release()
                s.evidence_channel = None

    # ---- incidents ----
    def on_incident(self, incident: dict[str, Any]) -> asyncio.Task[list[EvidenceFile]] | None:
        """Start recording evidence for an incident dict (id, unit_id, opened_at). Returns the task."""
        try:
            incident_id = int(incident["id"])
            unit_id = str(incident["unit_id"])
        except (KeyError, TypeError, ValueError):
            log.warning("incident event without id/unit_id: ignored for evidence")
            return None
        if incident_id in self._active:
            return self._active[incident_id]
        try:
            at = parse_time(incident.get("opened_at"))
        except ValueError:
            at = time.time()
        task = asyncio.create_task(self.capture(incident_id, unit_id, at), name=f"evidence-{incident_id}")
        self._active[incident_id] = task

        def done(t: asyncio.Task[list[EvidenceFile]]) -> None:
            self._active.pop(incident_id, None)
            fut = self._finished.setdefault(incident_id, asyncio.get_running_loop().create_future())
            if not fut.done():
                if t.cancelled():
                    fut.cancel()
                elif (exc := t.exception()) is not None:
                    fut.set_exception(exc)
                else:
                    fut.set_result(t.result())
            while len(self._finished) > 256:  # keep recent results only
                self._finished.pop(next(iter(self._finished)))

        task.add_done_callback(done)
        return task

    async def finished(self, incident_id: int) -> list[EvidenceFile]:
        """Wait until the evidence of an incident has been recorded (for tests and tools)."""
        fut = self._finished.setdefault(incident_id, asyncio.get_running_loop().create_future())
        return await asyncio.shield(fut)

    async def capture(self, incident_id: int, unit_id: str, at: float) -> list[EvidenceFile]:
        streams = [s for s in self.hub.for_unit(unit_id) if s.watching]  # cluster: the unit's other cameras'
        if not streams:  # evidence is recorded by the nodes that watch them
            return []
        base = {"incident_id": incident_id, "unit_id": unit_id, "opened_at": at, "created": time.time(),
                "hold": False, "files": []}  # fmt: skip
        async with self._manifest_lock:  # a photo may be saved at the same moment
            if await asyncio.to_thread(self.store.manifest, incident_id) is None:
                await asyncio.to_thread(self.store.write_manifest, incident_id, base)
        results = await asyncio.gather(
            *(self._capture_camera(incident_id, base, s, at) for s in streams), return_exceptions=True
        )
        files: list[EvidenceFile] = []
        for s, r in zip(streams, results, strict=True):
            if isinstance(r, BaseException):
                log.error("incident %s camera %s: evidence failed: %s", incident_id, s.id, r)
            else:
                files.extend(r)
        return files

    async def _capture_camera(
        self, incident_id: int, base: dict[str, Any], s: CameraStream, at: float
    ) -> list[EvidenceFile]:
        ring = self.rings.get(s.id)
        if ring is None:
            return []
        pre, post = self.video.pre_s, self.video.post_s
        collected: list[EncodedFrame] = ring.since(at - pre)
        ring.collectors.append(collected)
        out: list[EvidenceFile] = []
        d = self.store.incident_dir(incident_id)
        try:
            # Snapshot: the frame nearest the alarm; wait briefly for one when the alarm is just now.
            snap = ring.nearest(at)
            if snap is None or abs(snap.ts - at) > 2:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(3):
                        while not any(f.ts >= at for f in collected):
                            await ring.next_frame()
                snap = ring.nearest(at) or (collected[-1] if collected else None)
            if snap is not None:
                out.append(await self._save(incident_id, base, s.id, "snapshot", snap.data, "jpg", snap.ts))
            # Clip: keep collecting until post_s after the alarm (or until shutdown).
            end = at + post
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=max(0.0, end - time.time()) + 0.3)
        finally:
            ring.collectors.remove(collected)
        frames = [f for f in collected if at - pre <= f.ts <= at + post]
        if len(frames) >= 2:
            d.mkdir(parents=True, exist_ok=True)
            path = confined(d, f"{s.id}-clip.mp4")
            await encode_clip(frames, path, self.video.clip_crf)
            digest = await asyncio.to_thread(sha256_file, path)
            ef = EvidenceFile(
                f"{d.name}/{path.name}", "clip", s.id, digest, path.stat().st_size,
                frames[0].ts, frames[-1].ts, len(frames),
            )  # fmt: skip
            await self._register(incident_id, base, ef)
            out.append(ef)
        else:
            log.warning("incident %s camera %s: no video for a clip (camera offline?)", incident_id, s.id)
        return out

    async def _save(
        self, incident_id: int, base: dict[str, Any], camera_id: str, kind: str, data: bytes, ext: str, ts: float
    ) -> EvidenceFile:
        return await self.save_file(incident_id, base, f"{camera_id}-{kind}.{ext}", camera_id, kind, data, ts)

    async def save_file(
        self, incident_id: int, base: dict[str, Any], name: str, source: str, kind: str, data: bytes, ts: float
    ) -> EvidenceFile:
        """Writes one evidence file atomically, adds it to the manifest and records its SHA-256."""
        d = self.store.incident_dir(incident_id)

        _, digest = await asyncio.to_thread(write_confined, d, name, data)
        ef = EvidenceFile(f"{d.name}/{name}", kind, source, digest, len(data), ts, ts)
        await self._register(incident_id, base, ef)
        return ef

    async def add_written(self, incident_id: int, base: dict[str, Any], path: Path, source: str, kind: str,
                          start: float, end: float, *, frames: int = 0, keep_days: float = 0.0) -> EvidenceFile:
        """Registers a file already written into the incident's folder (a call recording): hashes it, lists it in
        the manifest (the folder kept at least `keep_days` from now) and records its SHA-256."""
        d = self.store.incident_dir(incident_id)
        path = confined(d, path.name)
        digest = await asyncio.to_thread(sha256_file, path)
        ef = EvidenceFile(f"{d.name}/{path.name}", kind, source, digest, path.stat().st_size, start, end, frames)
        await self._register(incident_id, base, ef)
        if keep_days > 0:
            async with self._manifest_lock:
                await asyncio.to_thread(self.store.keep_until, incident_id, time.time() + keep_days * 86400)
        return ef

    async def _register(self, incident_id: int, base: dict[str, Any], ef: EvidenceFile) -> None:
        async with self._manifest_lock:
            await asyncio.to_thread(self.store.add_file, incident_id, base, ef)
        log.info("incident %s: evidence %s saved (sha256 %s)", incident_id, ef.file, ef.sha256[:16])
        if self.record is not None:
            try:
                await self.record(
                    incident_id, "evidence.saved",
                    {"file": ef.file, "sha256": ef.sha256, "kind": ef.kind, "camera_id": ef.camera_id},
                )  # fmt: skip
            except Exception:
                log.exception("incident %s: recording evidence hash failed", incident_id)
