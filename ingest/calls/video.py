"""The phone's camera, forwarded as it was encoded: one continuous VP8 stream for the whole call.

The server never decodes or re-encodes the phone's picture (issue 15: eight recorded calls on two cores). The
phone's receiver hands out its depacketised VP8 frames (`aiortc_speedups.pass_through`), CallVideo restamps them
on the call's own clock and gives every viewer's sender and the recorder its own queue of them (`subscribe`);
aiortc's sender packetises pre-encoded frames as they are. A phone that drops and reconnects comes back on a new
peer connection with a new stream: the subscribers continue from its first key frame, on the same clock.

A VP8 frame depends on the frames since the last key frame, so nothing may be dropped in between: a subscriber
starts at a key frame, and one that falls behind (a viewer's congested link, a stalled recorder) skips to the next
key frame. Key frames come from the phone when asked (RTCP PLI, `request_keyframe`): when a subscriber needs one,
when a viewer reports picture loss, and every KEYFRAME_EVERY_S (a recording stays seekable, a snapshot decodes at
most that much). The frames since the last key frame are kept: a snapshot decodes them (in a thread) on demand.
What it costs: a viewer's picture follows the phone's bitrate, which the phone sets from the server's link to it,
not each viewer's own (an SFU's trade); for a command room on the station's network that link is the narrow one.
"""

from __future__ import annotations

import asyncio
import fractions
import io
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from PIL import Image

log = logging.getLogger(__name__)

CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)
KEYFRAME_EVERY_S = 10.0  # ask the phone for a key frame when the last one is older
KEYFRAME_MIN_GAP_S = 0.3  # at most one request per this (a burst of viewers' losses is one request)
MAX_BEHIND = 45  # frames queued for one subscriber (about 2 s) before it skips to the next key frame
MAX_GOP = 1200  # frames kept since the last key frame (a phone that ignores key-frame requests: memory bounded)

KeyframeFn = Callable[[], None]


@dataclass(frozen=True, slots=True)
class VideoPacket:
    """One encoded VP8 frame of the phone, on the call's clock."""

    data: bytes
    pts: int  # 1/90,000 s since the call's start
    key: bool
    at: float  # time.monotonic() of its arrival

    def packet(self) -> av.Packet[Any]:
        pkt = av.Packet(self.data)
        pkt.pts, pkt.time_base, pkt.is_keyframe = self.pts, TIME_BASE, self.key
        return pkt


def vp8_key(data: bytes) -> bool:
    """RFC 6386 §9.1: bit 0 of the frame tag is 0 on a key frame."""
    return bool(data) and not data[0] & 1


def vp8_size(data: bytes) -> tuple[int, int] | None:
    """A key frame's width and height (RFC 6386 §9.1), None for other frames."""
    if len(data) < 10 or not vp8_key(data) or data[3:6] != b"\x9d\x01\x2a":
        return None
    return int.from_bytes(data[6:8], "little") & 0x3FFF, int.from_bytes(data[8:10], "little") & 0x3FFF


class VideoFeed(MediaStreamTrack):
    """One subscriber's frames, as aiortc's sender wants them (av.Packet); the recorder reads `next()`."""

    kind = "video"

    def __init__(self, hub: CallVideo) -> None:
        super().__init__()
        self.hub = hub
        self.waiting_key = True
        self.skipped = 0  # times it fell behind and skipped to a key frame
        self._queue: deque[VideoPacket] = deque()
        self._ready = asyncio.Event()

    def offer(self, pkt: VideoPacket) -> None:
        if self.waiting_key:
            if not pkt.key:
                self.hub.request_keyframe()
                return
            self.waiting_key = False
        elif len(self._queue) >= MAX_BEHIND:
            self._queue.clear()
            self.skipped += 1
            self.resync()
            return
        self._queue.append(pkt)
        self._ready.set()

    def resync(self) -> None:
        """Continue from the next key frame (a new source, or frames lost on the way)."""
        self.waiting_key = True
        self.hub.request_keyframe()

    async def next(self) -> VideoPacket:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def recv(self) -> av.Packet[Any]:  # aiortc's senders take encoded packets as they are
        return (await self.next()).packet()

    def request_keyframe(self) -> None:
        """The viewer reported picture loss (its sender got a PLI or FIR): ask the phone."""
        self.hub.request_keyframe()

    def stop(self) -> None:
        super().stop()
        self.hub.unsubscribe(self)
        self._ready.set()


class CallVideo:
    """The call's video hub: one source (the phone's current receiver track) → every subscriber."""

    def __init__(self, origin: float | None = None) -> None:
        self.origin = time.monotonic() if origin is None else origin  # the call's clock: pts 0
        self.frames = 0
        self.feeds: list[VideoFeed] = []
        self.gop: list[VideoPacket] = []  # since the last key frame
        self._source: MediaStreamTrack | None = None
        self._keyframe: KeyframeFn | None = None
        self._asked = -KEYFRAME_MIN_GAP_S
        self._changed = asyncio.Event()
        self._last_pts = -1
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def set_source(self, track: MediaStreamTrack | None, keyframe: KeyframeFn | None = None) -> None:
        """Forward `track`'s frames from now on (None: the phone sends no video now); `keyframe()` asks its
        sender for a key frame. The previous source's connection must be closed by the caller."""
        self._source, self._keyframe = track, keyframe
        for feed in self.feeds:
            feed.waiting_key = True
        self.gop = []
        self._changed.set()
        if track is not None and self._task is None and not self._stopped:
            self._task = asyncio.create_task(self._pump(), name="call-video")

    def subscribe(self) -> VideoFeed:
        feed = VideoFeed(self)
        self.feeds.append(feed)
        self.request_keyframe()
        return feed

    def unsubscribe(self, feed: VideoFeed) -> None:
        if feed in self.feeds:
            self.feeds.remove(feed)

    def request_keyframe(self) -> None:
        now = time.monotonic()
        if self._keyframe is None or now - self._asked < KEYFRAME_MIN_GAP_S:
            return
        self._asked = now
        try:
            self._keyframe()
        except Exception:  # a connection closing under us: the next source asks again
            log.debug("key frame request failed", exc_info=True)

    async def stop(self) -> None:
        self._stopped = True
        self._changed.set()
        for feed in list(self.feeds):
            feed.stop()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, MediaStreamError):
                pass
            self._task = None

    async def _pump(self) -> None:
        while not self._stopped:
            source = self._source
            if source is None:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                frame = await source.recv()
            except MediaStreamError:
                if self._source is source:
                    self._source = None
                continue
            if self._source is source and isinstance(frame, av.Packet):
                self._forward(bytes(frame))

    def _forward(self, data: bytes) -> None:
        now = time.monotonic()
        pts = max(int((now - self.origin) * CLOCK_RATE), self._last_pts + 1)
        self._last_pts = pts
        pkt = VideoPacket(data, pts, vp8_key(data), now)
        self.frames += 1
        if pkt.key:
            self.gop = [pkt]
        elif len(self.gop) >= MAX_GOP:
            self.gop = []  # no snapshot until the phone's next key frame
        elif self.gop:
            self.gop.append(pkt)
            if now - self.gop[0].at > KEYFRAME_EVERY_S:
                self.request_keyframe()
        else:
            self.request_keyframe()  # no key frame yet from this source
        for feed in self.feeds:
            feed.offer(pkt)


def snapshot_jpeg(gop: list[VideoPacket], quality: int = 90) -> bytes | None:
    """The latest picture of `gop` (a key frame and those after it) as JPEG, None when there is none. Blocking
    (decodes up to KEYFRAME_EVERY_S of video): run it in a thread."""
    if not gop or not gop[0].key:
        return None
    decoder = av.CodecContext.create("vp8", "r")
    last: av.VideoFrame | None = None
    for pkt in gop:
        try:
            for frame in decoder.decode(av.Packet(pkt.data)):
                if isinstance(frame, av.VideoFrame):
                    last = frame
        except av.FFmpegError:
            break  # a damaged frame: the picture before it
    if last is None:
        return None
    buf = io.BytesIO()
    Image.fromarray(last.to_ndarray(format="rgb24")).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
