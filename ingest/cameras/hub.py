"""CameraHub: all cameras, their latest frames, shared JPEG encoders and health.

Data flow per camera::

    capture thread ──push()──► CameraStream.frames (latest raw frame, Broadcast)
                                   ├─► subscribe_frames(camera, fps)  (detectors)
                                   └─► EncodedChannel per width ─► Broadcast of JPEG
                                           ├─► live viewers (each takes the newest; slow ones skip)
                                           └─► evidence ring (one channel always on)

Nothing waits for a consumer: a Broadcast keeps only the newest value and
wakes whoever is waiting. A slow viewer simply finds a newer frame when it is
ready again, so it drops frames without slowing the camera or other viewers.
Each JPEG is encoded once per frame and width, in a thread pool (OpenCV
releases the GIL), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import cv2

from config.cameras import CameraConfig, VideoConfig
from ingest.cameras.capture import CameraCapture, Frame, Health, Status

log = logging.getLogger(__name__)

T = TypeVar("T")


class Broadcast(Generic[T]):
    """Latest-value cell: publish() never blocks; waiters wake and read the newest value."""

    def __init__(self) -> None:
        self.value: T | None = None
        self.seq = 0
        self.closed = False
        self._event = asyncio.Event()

    def publish(self, value: T) -> None:
        self.value = value
        self.seq += 1
        ev, self._event = self._event, asyncio.Event()
        ev.set()

    def close(self) -> None:
        self.closed = True
        self._event.set()

    async def wait_newer(self, seq: int) -> tuple[int, T] | None:
        """The newest (seq, value) with seq greater than `seq`, or None once closed."""
        while self.seq <= seq or self.value is None:
            if self.closed:
                return None
            await self._event.wait()
        if self.closed:
            return None
        return self.seq, self.value


@dataclass(frozen=True, slots=True)
class RawFrame:
    ts: float  # wall-clock time the frame was decoded (UNIX seconds)
    image: Frame  # BGR, read-only, shared


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    ts: float
    data: bytes  # JPEG
    width: int
    height: int


def encode_jpeg(image: Frame, width: int | None, quality: int) -> tuple[bytes, int, int]:
    """Blocking: scale to `width` (never up) and JPEG-encode."""
    h, w = image.shape[:2]
    if width is not None and width < w:
        nh = max(2, round(h * width / w))
        image = cv2.resize(image, (width, nh), interpolation=cv2.INTER_AREA)
        h, w = nh, width
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes(), w, h


class EncodedChannel:
    """One (camera, width) JPEG stream, encoded once per frame and shared by all its users."""

    def __init__(self, stream: CameraStream, width: int | None) -> None:
        self.stream = stream
        self.width = width
        self.out: Broadcast[EncodedFrame] = Broadcast()
        self.users = 0
        self.encoded = 0
        self._task: asyncio.Task[None] | None = None

    def acquire(self) -> None:
        self.users += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"jpeg-{self.stream.id}-{self.width}")

    def release(self) -> None:
        self.users -= 1
        if self.users <= 0 and self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        src = self.stream.frames
        seq = 0
        quality = self.stream.hub.video.jpeg_quality
        while True:
            got = await src.wait_newer(seq)
            if got is None:
                self.out.close()
                return
            seq, raw = got
            try:
                data, w, h = await loop.run_in_executor(
                    self.stream.hub.pool, encode_jpeg, raw.image, self.width, quality
                )
            except Exception:
                log.exception("camera %s: JPEG encoding failed", self.stream.id)
                await asyncio.sleep(1)
                continue
            self.encoded += 1
            self.out.publish(EncodedFrame(raw.ts, data, w, h))

    async def frames(self) -> AsyncIterator[EncodedFrame]:
        """The newest encoded frame each time one is ready (skips what the consumer missed)."""
        fresh = self.out.value is not None and self.out.value.ts > time.time() - 1.0
        seq = self.out.seq - 1 if fresh else self.out.seq  # start with the current frame unless stale
        while True:
            got = await self.out.wait_newer(seq)
            if got is None:
                return
            seq, frame = got
            yield frame


class CameraStream:
    """Event-loop side of one camera."""

    def __init__(self, hub: CameraHub, cfg: CameraConfig) -> None:
        self.hub = hub
        self.cfg = cfg
        self.id = cfg.id
        self.frames: Broadcast[RawFrame] = Broadcast()
        self.channels: dict[int | None, EncodedChannel] = {}
        self.capture = CameraCapture(cfg, self.push)
        self.health: Health = Health(Status.DISABLED if not cfg.enabled else Status.STARTING, None)
        self.health_since = time.time()
        self._lock = threading.Lock()
        self._pending: RawFrame | None = None
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.evidence_channel: EncodedChannel | None = None
        self.on_first_frame: list[Callable[[CameraStream], None]] = []
        self.watching = False  # this process captures it (always on a single box; cluster: while it holds the lease)
        self.watcher: str | None = None  # cluster mode: the node that watches it, when known

    # -- thread side --
    def push(self, ts: float, image: Frame) -> None:
        """Called from the capture thread: keep only the newest frame, wake the loop once."""
        loop = self._loop
        if loop is None or not self.watching:  # a straggler of a capture being stopped is dropped
            return
        with self._lock:
            self._pending = RawFrame(ts, image)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # loop closed during shutdown
            pass

    # -- loop side --
    def _deliver(self) -> None:
        with self._lock:
            raw, self._pending = self._pending, None
            self._scheduled = False
        if raw is None or not self.watching:
            return
        first = self.frames.value is None
        self.frames.publish(raw)
        if first:
            for cb in self.on_first_frame:
                cb(self)

    @property
    def width(self) -> int | None:
        return self.capture.width

    def channel_key(self, width: int | None) -> int | None:
        """Snap a requested width to an allowed one; the source width (or larger) means native."""
        if width is not None:
            allowed = sorted(self.hub.video.live_widths)
            width = next((w for w in allowed if w >= width), allowed[-1])
        sw = self.width
        if sw is None:
            return width
        if width is None or width >= sw:
            return sw
        return width

    def channel(self, width: int | None) -> EncodedChannel:
        key = self.channel_key(width)
        ch = self.channels.get(key)
        if ch is None:
            ch = self.channels[key] = EncodedChannel(self, key)
        return ch

    def info(self) -> dict[str, Any]:
        cfg = self.cfg
        out: dict[str, Any] = {
            "id": cfg.id,
            "unit_id": cfg.unit_id,
            "name": cfg.name,
            "location": cfg.location,
            "enabled": cfg.enabled,
            **self.capture.info(),
            "status": self.health.status.value,
            "fault": self.health.fault,
            "status_since": self.health_since,
            "viewers": sum(c.users for c in self.channels.values() if c is not self.evidence_channel),
            "watched_by": self.watcher,
        }
        return out

    def close(self) -> None:
        self.frames.close()
        for ch in self.channels.values():
            ch.out.close()


StatusCallback = Callable[[CameraStream, Health, Health], None]


class CameraHub:
    """All cameras of the station. Start/stop from the event loop."""

    def __init__(
        self,
        cameras: Sequence[CameraConfig],
        video: VideoConfig | None = None,
        *,
        health_interval_s: float = 0.25,
        encode_workers: int | None = None,
        stop_wait_s: float = 2.0,
    ) -> None:
        ids = [c.id for c in cameras]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate camera ids: {dupes}")
        self.video = video or VideoConfig()
        self.pool = ThreadPoolExecutor(
            max_workers=encode_workers or max(2, os.cpu_count() or 2), thread_name_prefix="jpeg"
        )
        self.streams: dict[str, CameraStream] = {c.id: CameraStream(self, c) for c in cameras}
        self.health_interval_s = health_interval_s
        self.stop_wait_s = stop_wait_s
        self.on_status: list[StatusCallback] = []
        self.on_watch: list[Callable[[str, bool], None]] = []  # (camera id, watching) when a capture starts/stops
        self._task: asyncio.Task[None] | None = None
        self.started = False

    # ---- lookup ----
    def get(self, camera_id: str) -> CameraStream:
        return self.streams[camera_id]

    def __contains__(self, camera_id: object) -> bool:
        return camera_id in self.streams

    def for_unit(self, unit_id: str) -> list[CameraStream]:
        return [s for s in self.streams.values() if s.cfg.unit_id == unit_id]

    def list(self) -> list[dict[str, Any]]:
        return [s.info() for s in self.streams.values()]

    # ---- lifecycle ----
    async def start(self, watch: Iterable[str] | None = None) -> None:
        """Starts capturing `watch` (default: every camera); the others wait in standby for `watch_camera`."""
        loop = asyncio.get_running_loop()
        ids = set(self.streams) if watch is None else set(watch)
        for s in self.streams.values():
            s._loop = loop
            if s.id in ids:
                self._begin(s)
            elif s.cfg.enabled:
                s.health, s.health_since = Health(Status.STANDBY, None), time.time()
        self._task = asyncio.create_task(self._watch_health(), name="camera-health")
        self.started = True
        log.info("camera hub started with %d camera(s), %d watched here", len(self.streams),
                 sum(s.watching for s in self.streams.values()))

    def _begin(self, s: CameraStream) -> None:
        s.watching = True
        s.capture.started_mono = time.monotonic()
        s.capture.start()
        for cb in list(self.on_watch):
            cb(s.id, True)

    async def watch(self, camera_id: str) -> None:
        """Starts capturing a camera in standby (cluster mode: this node took its lease)."""
        s = self.get(camera_id)
        if s.watching:
            return
        s.capture = CameraCapture(s.cfg, s.push)  # a fresh thread and fresh measurements
        self._begin(s)
        log.info("camera %s: watched here", camera_id)

    async def unwatch(self, camera_id: str) -> None:
        """Stops capturing a camera (cluster mode: its lease goes to another node). Frames stop at once (a straggler
        of the thread is dropped); the thread is waited for at most `stop_wait_s`."""
        s = self.get(camera_id)
        if not s.watching:
            return
        s.watching = False
        for cb in list(self.on_watch):
            cb(s.id, False)
        s.capture.request_stop()
        old, s.health = s.health, Health(Status.STANDBY if s.cfg.enabled else Status.DISABLED, None)
        s.health_since = time.time()
        self._changed(s, old)
        await asyncio.to_thread(s.capture.join, self.stop_wait_s)
        log.info("camera %s: no longer watched here", camera_id)

    def watched_by(self, camera_id: str, node: str | None) -> None:
        """Cluster mode: which node watches the camera; a change is announced like a status change (consoles)."""
        s = self.get(camera_id)
        if s.watcher != node:
            s.watcher = node
            if not s.watching:
                self._changed(s, s.health)

    async def stop(self) -> None:
        self.started = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for s in self.streams.values():
            s.capture.request_stop()
            for ch in list(s.channels.values()):
                if ch._task is not None:
                    ch._task.cancel()
            s.close()
        # Threads may sit in a blocking read for up to read_timeout_s; they are daemons and see
        # the stop flag as soon as the read returns. Wait a bounded time, off the loop.
        # A thread still opening a slow camera is left to finish on its own (daemon; it releases
        # the capture itself), so shutdown never waits more than `stop_wait_s`.
        await asyncio.gather(*(asyncio.to_thread(s.capture.join, self.stop_wait_s) for s in self.streams.values()))
        self.pool.shutdown(wait=False, cancel_futures=True)
        log.info("camera hub stopped")

    async def _watch_health(self) -> None:
        while True:
            now = time.monotonic()
            for s in self.streams.values():
                if not s.watching:
                    continue  # standby: another node judges its health
                h = s.capture.health(now)
                if h.status != s.health.status:
                    old, s.health = s.health, h
                    s.health_since = time.time()
                    self._changed(s, old)
                elif h.fault != s.health.fault:
                    s.health = h
            await asyncio.sleep(self.health_interval_s)

    def _changed(self, s: CameraStream, old: Health) -> None:
        h = s.health
        log_fn = log.warning if h.is_fault else log.info
        log_fn("camera %s: %s%s", s.id, h.status.value, f" ({h.fault})" if h.fault else "")
        for cb in list(self.on_status):
            try:
                cb(s, old, h)
            except Exception:
                log.exception("camera status callback failed")

    def end_live_views(self) -> None:
        """End every live viewer's stream (app shutdown: don't hold connections open)."""
        for s in self.streams.values():
            for ch in s.channels.values():
                if ch is not s.evidence_channel:
                    ch.out.close()

    async def wait_status(self, camera_id: str, *statuses: Status, within: float) -> Health:
        """Wait until a camera's status is one of `statuses` (raises TimeoutError)."""
        s = self.get(camera_id)
        fut: asyncio.Future[Health] = asyncio.get_running_loop().create_future()

        def cb(stream: CameraStream, _old: Health, new: Health) -> None:
            if stream is s and new.status in statuses and not fut.done():
                fut.set_result(new)

        if s.health.status in statuses:
            return s.health
        self.on_status.append(cb)
        try:
            return await asyncio.wait_for(fut, within)
        finally:
            self.on_status.remove(cb)

    # ---- consumers ----
    async def subscribe_frames(
        self, camera_id: str, fps: float | None = None
    ) -> AsyncGenerator[tuple[float, Frame], None]:
        """Decoded BGR frames of one camera for detectors: (wall-clock ts, read-only ndarray).

        Yields the newest frame, at most `fps` per second; frames the consumer is too slow for are
        skipped (never queued). Ends when the hub stops. Copy a frame before modifying it.
        """
        src = self.get(camera_id).frames
        period = 1.0 / fps if fps else 0.0
        seq = 0
        next_at = 0.0
        while True:
            if period:
                delay = next_at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            got = await src.wait_newer(seq)
            if got is None:
                return
            seq, raw = got
            next_at = time.monotonic() + period
            yield raw.ts, raw.image

    @contextlib.asynccontextmanager
    async def live(self, camera_id: str, width: int | None = None) -> AsyncIterator[EncodedChannel]:
        """Use a shared JPEG channel of a camera at (about) `width` while the block runs."""
        ch = self.get(camera_id).channel(width)
        ch.acquire()
        try:
            yield ch
        finally:
            ch.release()

    async def snapshot(self, camera_id: str, width: int | None = None) -> EncodedFrame | None:
        """The latest frame as JPEG (reuses a live encode of that frame when there is one)."""
        s = self.get(camera_id)
        raw = s.frames.value
        if raw is None:
            return None
        ch = s.channels.get(s.channel_key(width))
        if ch is not None and ch.out.value is not None and ch.out.value.ts == raw.ts:
            return ch.out.value
        loop = asyncio.get_running_loop()
        key = s.channel_key(width)
        data, w, h = await loop.run_in_executor(self.pool, encode_jpeg, raw.image, key, self.video.jpeg_quality)
        return EncodedFrame(raw.ts, data, w, h)
