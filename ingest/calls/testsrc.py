"""Synthetic call participants for tests, the benchmark and demos (no camera, no microphone, no browser).

* ToneTrack: a sine tone (a voice that is easy to detect: its energy is known).
* StampedVideo: frames that carry the wall-clock time they were made, as a row of black/white blocks that
  survive video compression; `read_stamp` reads it back on the receiving side (glass-to-glass latency).
* ClientPeer: an aiortc peer connection playing a browser: it offers (audio, and video to send or receive),
  takes the server's answer, and measures what it receives (audio energy, video frames, stamp latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import math
import time
from dataclasses import dataclass, field
from typing import Any

import av
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

from ingest.calls import aiortc_speedups

RATE = 48_000
PTIME = 0.020
STAMP_BITS = 44  # milliseconds since the epoch fit in 44 bits until the year 2527
BLOCK = 16  # pixels per bit (a block survives compression)


class ToneTrack(MediaStreamTrack):
    """A continuous sine tone, 20 ms frames in real time; `muted` sends silence instead."""

    kind = "audio"

    def __init__(self, freq: float = 440.0, level: float = 0.3) -> None:
        super().__init__()
        self.freq = freq
        self.level = level
        self.muted = False
        self._start: float | None = None
        self._samples = 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = int(RATE * PTIME)
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._start + self._samples / RATE - time.monotonic()))
        t = (np.arange(n) + self._samples) / RATE
        wave = np.zeros(n) if self.muted else self.level * np.sin(2 * math.pi * self.freq * t)
        frame = av.AudioFrame.from_ndarray((wave * 32767).astype(np.int16).reshape(1, -1), format="s16",
                                           layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, RATE)
        self._samples += n
        return frame


def stamp_frame(width: int, height: int, ms: int, phase: int) -> av.VideoFrame:
    """A grey frame with a moving bar and `ms` written as STAMP_BITS blocks across its top."""
    img = np.full((height, width), 96, dtype=np.uint8)
    x = (phase * 8) % max(1, width - 40)
    img[height // 2: height // 2 + 40, x: x + 40] = 200
    for bit in range(STAMP_BITS):
        row, col = divmod(bit, width // BLOCK)
        value = 255 if (ms >> (STAMP_BITS - 1 - bit)) & 1 else 0
        img[row * BLOCK: (row + 1) * BLOCK, col * BLOCK: (col + 1) * BLOCK] = value
    return av.VideoFrame.from_ndarray(img, format="gray").reformat(format="yuv420p")


def read_stamp(frame: av.VideoFrame) -> int | None:
    """The milliseconds written by `stamp_frame`, read from a (decoded, maybe rescaled) frame; None if absent."""
    img = frame.to_ndarray(format="gray")
    h, w = img.shape
    per_row = 640 // BLOCK if w else 0  # the sender's layout: blocks per row at its width
    scale = w / 640
    ms = 0
    for bit in range(STAMP_BITS):
        row, col = divmod(bit, per_row)
        y = int((row + 0.5) * BLOCK * scale)
        x = int((col + 0.5) * BLOCK * scale)
        if y >= h or x >= w:
            return None
        ms = (ms << 1) | int(img[y, x] > 128)
    return ms


class StampedVideo(VideoStreamTrack):
    """640×480 frames stamped with the time they were made (`stamp_frame`), at `fps`."""

    def __init__(self, fps: int = 15) -> None:
        super().__init__()
        self.fps = fps
        self._n = 0
        self._t0: float | None = None

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._t0 + self._n / self.fps - time.monotonic()))
        frame = stamp_frame(640, 480, int(time.time() * 1000), self._n)
        frame.pts = int(self._n * 90_000 / self.fps)
        frame.time_base = fractions.Fraction(1, 90_000)
        self._n += 1
        return frame


class EncodedVideo(MediaStreamTrack):
    """A pre-encoded clip's packets (e.g. VP8 in WebM), looped and paced at `fps`: a phone that costs its sender no
    encoding (aiortc sends packets as they are). The clip should start with a keyframe and have them often."""

    kind = "video"

    def __init__(self, path: str, fps: int) -> None:
        super().__init__()
        with av.open(path) as container:
            self.packets = [bytes(p) for p in container.demux(video=0) if p.size]
        self.fps = fps
        self._n = 0
        self._t0: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        if self._t0 is None:
            self._t0 = time.monotonic()
        else:
            await asyncio.sleep(max(0.0, self._t0 + self._n / self.fps - time.monotonic()))
        packet = av.Packet(self.packets[self._n % len(self.packets)])
        packet.pts = int(self._n * 90_000 / self.fps)
        packet.time_base = fractions.Fraction(1, 90_000)
        self._n += 1
        return packet


@dataclass
class Received:
    """What a ClientPeer got from the server."""

    audio_frames: int = 0
    audio_energy: float = 0.0  # sum of squared samples (normalised to ±1)
    video_frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    first_media_at: float | None = None  # time.monotonic() of the first frame received

    def energy_since(self, mark: float) -> float:
        return self.audio_energy - mark


class ClientPeer:
    """A participant played by aiortc: `offer()` → SDP to send to the server, `accept(answer)`."""

    def __init__(self, *, audio: MediaStreamTrack | None, video: MediaStreamTrack | None = None,
                 receive_video: bool = False, stamps: bool = False, decode_video: bool = True) -> None:
        """`decode_video=False`: the video received is counted, not decoded (a load test's cheap viewer)."""
        if not decode_video:
            aiortc_speedups.install()
        self.pc = RTCPeerConnection()
        self.audio = audio
        self.received = Received()
        self.stamps = stamps
        self._tasks: list[asyncio.Task[None]] = []
        if audio is not None:
            self.pc.addTransceiver(audio, direction="sendrecv")
        else:
            self.pc.addTransceiver("audio", direction="recvonly")
        if video is not None:
            self.pc.addTransceiver(video, direction="sendonly")
        elif receive_video:
            self.pc.addTransceiver("video", direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "video" and not decode_video:
                aiortc_speedups.pass_through(track)
            self._tasks.append(asyncio.create_task(self._consume(track)))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())  # aiortc gathers candidates here
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))

    async def connected(self, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout):
            while self.pc.connectionState != "connected":
                if self.pc.connectionState in ("failed", "closed"):
                    raise ConnectionError(f"peer connection {self.pc.connectionState}")
                await asyncio.sleep(0.02)

    async def _consume(self, track: MediaStreamTrack) -> None:
        r = self.received
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if r.first_media_at is None:
                r.first_media_at = time.monotonic()
            if isinstance(frame, av.AudioFrame):
                pcm = frame.to_ndarray().astype(np.float64) / 32768.0
                r.audio_frames += 1
                r.audio_energy += float(np.square(pcm).sum())
            elif isinstance(frame, av.Packet):
                r.video_frames += 1
            elif isinstance(frame, av.VideoFrame):
                r.video_frames += 1
                if self.stamps:
                    ms = read_stamp(frame)
                    if ms is not None and abs(time.time() * 1000 - ms) < 60_000:
                        r.latencies_ms.append(time.time() * 1000 - ms)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self.pc.close()
