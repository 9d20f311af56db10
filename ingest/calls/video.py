"""The phone's camera as one continuous track for the whole call.

A phone that drops and reconnects comes back on a new peer connection, with a new track and new timestamps.
CallVideo forwards the frames of whichever track the phone currently sends, restamped on the call's own clock,
so the officers' and the brigade's senders and the recording see one track that pauses and resumes. It keeps the
latest frame for snapshots. Its consumers subscribe through aiortc's MediaRelay (each takes the newest frame).
"""

from __future__ import annotations

import asyncio
import fractions
import io
import time

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from PIL import Image

CLOCK_RATE = 90_000
TIME_BASE = fractions.Fraction(1, CLOCK_RATE)


class CallVideo(MediaStreamTrack):
    kind = "video"

    def __init__(self, origin: float | None = None) -> None:
        super().__init__()
        self.origin = time.monotonic() if origin is None else origin  # the call's clock: pts 0
        self.latest: av.VideoFrame | None = None
        self.latest_at = 0.0  # time.monotonic() of the latest frame
        self.frames = 0
        self._source: MediaStreamTrack | None = None
        self._changed = asyncio.Event()
        self._last_pts = -1

    def set_source(self, track: MediaStreamTrack | None) -> None:
        """Forward `track` from now on (None: the phone sends no video now). The previous source's connection
        must be closed by the caller, which ends a recv() waiting on it."""
        self._source = track
        self._changed.set()

    def stop(self) -> None:
        super().stop()
        self._changed.set()

    async def recv(self) -> av.VideoFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
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
            if self._source is not source or not isinstance(frame, av.VideoFrame):
                continue
            now = time.monotonic()
            pts = max(int((now - self.origin) * CLOCK_RATE), self._last_pts + 1)
            self._last_pts = pts
            frame.pts = pts
            frame.time_base = TIME_BASE
            self.latest, self.latest_at = frame, now
            self.frames += 1
            return frame

    def snapshot_jpeg(self, quality: int = 90) -> bytes | None:
        """The latest frame as JPEG (blocking: run it in a thread), or None before the first frame."""
        frame = self.latest
        if frame is None:
            return None
        buf = io.BytesIO()
        Image.fromarray(frame.to_ndarray(format="rgb24")).save(buf, format="JPEG", quality=quality)
        return buf.getvalue()
