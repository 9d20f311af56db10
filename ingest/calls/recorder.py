"""Records a call: its mixed audio and the phone's video into one WebM (VP8 + Opus) with PyAV.

The phone's VP8 frames are written as the phone encoded them (no decoding, no re-encoding: ingest.calls.video);
the mixed audio is encoded to Opus. Frames are read on the event loop and written in a thread of their own (the
encoder and the muxer never block the loop); between them a deque the thread drains every POLL_S (no lock
hand-off per frame), bounded: when writing falls behind, video skips to the phone's next key frame, audio is never
dropped. Both tracks
are stamped on the recorder's clock (time since `start`): audio from its first frame's arrival on, continuously by
its own timestamps (a gap in them — the mixer skipped time it could not catch up — becomes silence; late or bursty
delivery changes nothing), video by arrival, so the file lasts as long as the call was recorded and both tracks
stay in step across a phone's reconnect. Both tracks span the whole recording: silence before the first sound, the
first picture from the start (a phone's video may come a second or more after the call connects, more on a loaded
server) and the last picture held until the end (a stalled or dropped camera).
The container opens at the first key frame (its size is the track's; a camera switch later changes the size of
the pictures, which players follow); when no video comes for OPEN_WITHOUT_VIDEO_S the file gets a black
DEFAULT_SIZE track.

The file is written as `<name>.part` and renamed when complete, so a half-written recording is never served.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from ingest.calls.video import VideoFeed, VideoPacket, vp8_size

log = logging.getLogger(__name__)

VIDEO_TIME_BASE = fractions.Fraction(1, 1000)  # Matroska's
AUDIO_RATE = 48_000
AUDIO_BITRATE = 32_000  # Opus, mono: clear speech
OPEN_WITHOUT_VIDEO_S = 3.0
DEFAULT_SIZE = (640, 360)
MAX_GAP_S = 600.0  # a longer jump in the audio's timestamps is not filled (a broken source, not a pause)
QUEUE_FRAMES = 400
POLL_S = 0.02
HOLD_S = 0.1  # a track ending more than this before the recording's end is extended to it

Item = tuple["av.AudioFrame | VideoPacket", float] | None  # (what, seconds since start); None: the end


@dataclass(frozen=True, slots=True)
class Recording:
    """A finished recording."""

    path: Path
    duration_s: float  # of the longer track
    audio_s: float
    video_s: float
    video_frames: int
    width: int
    height: int
    bytes: int


class CallRecorder:
    """Writes one call's audio (one mixed track) and video into `path` (a .webm)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.origin = 0.0
        self.stopped_at: float | None = None  # seconds since `start` when stop() was called
        self.dropped = 0
        self._queue: deque[Item] = deque()
        self._stopping = threading.Event()  # set with the end marker: the thread wakes at once
        self._tasks: list[asyncio.Task[None]] = []
        self._thread: threading.Thread | None = None
        self._result: Recording | None = None
        self._error: BaseException | None = None

    @property
    def part(self) -> Path:
        return self.path.with_name(self.path.name + ".part")

    def start(self, audio: MediaStreamTrack, video: VideoFeed) -> None:
        self.origin = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._work, name=f"call-recorder-{self.path.name}", daemon=True)
        self._thread.start()
        self._tasks = [asyncio.create_task(self._read_audio(audio), name="call-record-audio"),
                       asyncio.create_task(self._read_video(video), name="call-record-video")]

    async def stop(self) -> Recording:
        """Ends the recording: encodes what is queued, closes the file, renames it into place."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self.stopped_at = time.monotonic() - self.origin
        self._queue.append(None)
        self._stopping.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise RuntimeError(f"call recording failed: {self._error}") from self._error
        if self._result is None:
            raise RuntimeError("call recording was never started")
        return self._result

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if isinstance(frame, av.AudioFrame):
                self._queue.append((frame, time.monotonic() - self.origin))

    async def _read_video(self, feed: VideoFeed) -> None:
        while True:
            try:
                pkt = await feed.next()
            except MediaStreamError:
                return
            if len(self._queue) >= QUEUE_FRAMES:  # audio first: speech is never dropped
                self.dropped += 1
                feed.resync()
                continue
            self._queue.append((pkt, time.monotonic() - self.origin))

    # ------------------------------------------------------------ encoding thread

    def _work(self) -> None:
        try:
            self._result = _Encoder(self).run(self._queue, self._stopping)
        except BaseException as exc:  # reported by stop()
            log.exception("call recording %s failed", self.path.name)
            self._error = exc
            with contextlib.suppress(OSError):
                self.part.unlink(missing_ok=True)


class _Encoder:
    """The writing thread's state: one container, one video (copied) and one audio (Opus) stream."""

    def __init__(self, rec: CallRecorder) -> None:
        self.rec = rec
        self.container: av.container.OutputContainer | None = None
        self.vstream: av.VideoStream | None = None
        self.astream: av.AudioStream | None = None
        self.size = DEFAULT_SIZE
        self.pending: list[tuple[av.AudioFrame, float]] = []
        self.samples = 0  # audio samples written (the audio timeline, from the first audio frame's time)
        self.audio_start: float | None = None
        self.next_pts: int | None = None  # the source's timestamp (its samples) expected next
        self.video_frames = 0
        self.last_vpts = -1
        self.first_video: float | None = None
        self.last_video = 0.0
        self.held: av.Packet[Any] | None = None  # the last picture, written once the next one (or the end) is known
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)

    def run(self, q: deque[Item], stopping: threading.Event) -> Recording:
        while True:
            try:
                item = q.popleft()
            except IndexError:
                stopping.wait(POLL_S)
                continue
            if item is None:
                break
            frame, at = item
            if isinstance(frame, VideoPacket):
                if self.container is None:
                    self.open(*(vp8_size(frame.data) or DEFAULT_SIZE))
                self.video(frame.data, frame.key, at)
            else:
                if self.container is None:
                    self.pending.append((frame, at))
                    if at - self.pending[0][1] >= OPEN_WITHOUT_VIDEO_S:
                        self.open(*DEFAULT_SIZE)
                else:
                    self.audio(frame, at)
        if self.container is None:
            self.open(*DEFAULT_SIZE)
        return self.close()

    def open(self, width: int, height: int) -> None:
        self.size = (width, height)
        container = av.open(str(self.rec.part), mode="w", format="webm")
        vstream = container.add_stream("libvpx", rate=30)  # (its encoder only ever makes the black picture)
        vstream.width, vstream.height, vstream.pix_fmt = width, height, "yuv420p"
        vstream.time_base = VIDEO_TIME_BASE
        astream = container.add_stream("libopus", rate=AUDIO_RATE)
        astream.layout = "mono"
        astream.bit_rate = AUDIO_BITRATE
        self.container, self.vstream, self.astream = container, vstream, astream
        pending, self.pending = self.pending, []
        for frame, at in pending:
            self.audio(frame, at)

    def mux(self, packets: list[av.Packet[Any]]) -> None:
        assert self.container is not None
        if packets:
            self.container.mux(packets)

    def video(self, data: bytes, key: bool, at: float) -> None:
        assert self.vstream is not None
        if self.first_video is None:
            at = 0.0  # the first picture stands from the recording's start
        pts = max(int(at / VIDEO_TIME_BASE), self.last_vpts + 1)
        self.last_vpts = pts
        pkt = av.Packet(data)
        pkt.stream, pkt.pts, pkt.dts, pkt.time_base, pkt.is_keyframe = self.vstream, pts, pts, VIDEO_TIME_BASE, key
        self.release(pts)
        self.held = pkt
        self.video_frames += 1
        if self.first_video is None:
            self.first_video = at
        self.last_video = at

    def release(self, until: int) -> None:
        """Writes the held picture, shown until `until` (ms)."""
        if self.held is not None:
            assert self.held.pts is not None
            self.held.duration = max(1, until - self.held.pts)
            self.mux([self.held])
            self.held = None

    def audio(self, frame: av.AudioFrame, at: float) -> None:
        assert self.astream is not None
        if self.audio_start is None:  # silence from the recording's start to the first sound
            self.audio_start = 0.0
            self.silence(int(max(0.0, at - frame.samples / max(1, frame.sample_rate)) * AUDIO_RATE))
        if frame.pts is not None and frame.sample_rate:
            if self.next_pts is not None and 0 < frame.pts - self.next_pts < MAX_GAP_S * frame.sample_rate:
                self.silence(int((frame.pts - self.next_pts) * AUDIO_RATE / frame.sample_rate))  # time the mix skipped
            self.next_pts = frame.pts + frame.samples
        frame.pts = None
        for pcm in self.resampler.resample(frame):
            self.write_audio(pcm)

    def write_audio(self, pcm: av.AudioFrame) -> None:
        assert self.astream is not None
        pcm.pts = int((self.audio_start or 0.0) * AUDIO_RATE) + self.samples
        pcm.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.samples += pcm.samples
        self.mux(self.astream.encode(pcm))

    def silence(self, samples: int) -> None:
        while samples > 0:
            n = min(samples, 4800)
            pcm = av.AudioFrame.from_ndarray(np.zeros((1, n), dtype=np.int16), format="s16", layout="mono")
            pcm.sample_rate = AUDIO_RATE
            self.write_audio(pcm)
            samples -= n

    def black(self) -> None:
        """No picture at all: one black frame keeps the file a valid video."""
        assert self.vstream is not None
        frame = av.VideoFrame(self.size[0], self.size[1], "yuv420p")
        for plane, value in zip(frame.planes, (16, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = 0, VIDEO_TIME_BASE
        for pkt in [*self.vstream.encode(frame), *self.vstream.encode(None)]:
            self.video(bytes(pkt), True, self.audio_start or 0.0)

    def close(self) -> Recording:
        assert self.container is not None and self.vstream is not None and self.astream is not None
        if self.video_frames == 0:
            self.black()
        end = self.rec.stopped_at
        if end is not None and self.audio_start is not None:  # both tracks until the end: silence, the picture held
            missing = int((end - self.audio_start) * AUDIO_RATE) - self.samples
            if missing > HOLD_S * AUDIO_RATE:
                self.silence(missing)
        last = max(self.last_video, end or 0.0)
        self.release(max(self.last_vpts + 1, int(last / VIDEO_TIME_BASE)))
        self.mux(self.astream.encode(None))
        self.container.close()
        part = self.rec.part
        part.replace(self.rec.path)
        audio_s = self.samples / AUDIO_RATE
        audio_end = (self.audio_start or 0.0) + audio_s
        video_s = last if self.first_video is not None else 0.0  # (the first picture stands from 0)
        return Recording(self.rec.path, max(audio_end, last), audio_s, video_s, self.video_frames,
                         self.size[0], self.size[1], self.rec.path.stat().st_size)
