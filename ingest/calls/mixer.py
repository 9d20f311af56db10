"""The call's audio: a mix-minus conference mixer (every participant hears everyone but itself).

Each participant's received track is read by one task that resamples it (PyAV) to mono 48 kHz s16 into a
short buffer. Every 20 ms the mixer takes 20 ms from each buffer (silence where a buffer has none), sums them once,
and hands each output its frame: the sum less its own participant's part (the recording's output takes the whole
sum). Outputs are aiortc tracks, so each peer connection's sender encodes (Opus) what its participant hears.

Latency stays bounded: a buffer holding more than MAX_BUFFER_S drops its oldest audio, an output whose consumer
lags keeps only its newest frames, and a mixer that fell behind catches up by at most CATCH_UP frames, then skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import logging
import time
from dataclasses import dataclass, field

import av
import numpy as np
import numpy.typing as npt
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger(__name__)

RATE = 48_000
PTIME = 0.020
SAMPLES = int(RATE * PTIME)  # 960 samples per 20 ms frame
TIME_BASE = fractions.Fraction(1, RATE)
PRIME = 2 * SAMPLES  # a buffer starts (and restarts after running dry) once it holds 40 ms: no clicks from jitter
MAX_BUFFER_S = 0.2
CATCH_UP = 5  # frames produced at once after a late tick; later than that, the schedule restarts
OUTPUT_QUEUE = 10  # frames an output keeps for a lagging consumer (200 ms); older ones are dropped

Samples = npt.NDArray[np.int16]


class MixOutput(MediaStreamTrack):
    """One participant's (or the recording's) mixed audio: 20 ms frames with continuous timestamps."""

    kind = "audio"

    def __init__(self, exclude: str | None) -> None:
        super().__init__()
        self.exclude = exclude
        self._queue: asyncio.Queue[av.AudioFrame | None] = asyncio.Queue()
        self._pts = 0

    def push(self, mix: Samples) -> None:
        # stereo with both channels alike: the Opus encoder takes it as is (a mono frame is upmixed at -3 dB)
        frame = av.AudioFrame.from_ndarray(np.repeat(mix, 2).reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = RATE
        frame.time_base = TIME_BASE
        frame.pts = self._pts
        self._pts += SAMPLES
        while self._queue.qsize() >= OUTPUT_QUEUE:
            self._queue.get_nowait()
        self._queue.put_nowait(frame)

    def skip(self, samples: int) -> None:
        """Time the mixer could not make up: the next frame's timestamp jumps by it (a recorder fills it in)."""
        self._pts += samples

    def end(self) -> None:
        self._queue.put_nowait(None)

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


@dataclass
class _Input:
    """One participant's received audio, resampled, waiting to be mixed."""

    track: MediaStreamTrack
    buffer: Samples = field(default_factory=lambda: np.zeros(0, dtype=np.int16))
    primed: bool = False
    last_frame: float = 0.0  # time.monotonic() of the last frame received
    frames: int = 0
    task: asyncio.Task[None] | None = None

    def take(self) -> Samples | None:
        """The next 20 ms, or None (silence) while the buffer is empty or priming."""
        if not self.primed:
            if len(self.buffer) < PRIME:
                return None
            self.primed = True
        if len(self.buffer) < SAMPLES:
            self.primed = False  # ran dry: wait for PRIME again
            return None
        chunk, self.buffer = self.buffer[:SAMPLES], self.buffer[SAMPLES:]
        return chunk


class AudioMixer:
    """Mix-minus mixer of one call. `add_input` / `remove_input` follow who is connected; `output(key)` is what
    participant `key` hears (None: everyone, for the recording)."""

    def __init__(self) -> None:
        self.inputs: dict[str, _Input] = {}
        self.outputs: list[MixOutput] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="call-mixer")

    async def stop(self) -> None:
        for key in list(self.inputs):
            self.remove_input(key)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for out in self.outputs:
            out.end()
        self.outputs.clear()

    def output(self, exclude: str | None) -> MixOutput:
        out = MixOutput(exclude)
        self.outputs.append(out)
        return out

    def drop_output(self, out: MixOutput) -> None:
        if out in self.outputs:
            self.outputs.remove(out)
            out.end()

    def add_input(self, key: str, track: MediaStreamTrack) -> None:
        """Mixes `track` as participant `key`'s voice (replacing a previous one of the same key)."""
        self.remove_input(key)
        inp = _Input(track, last_frame=time.monotonic())
        inp.task = asyncio.create_task(self._read(inp), name=f"call-audio-in-{key}")
        self.inputs[key] = inp

    def remove_input(self, key: str) -> None:
        inp = self.inputs.pop(key, None)
        if inp is not None and inp.task is not None:
            inp.task.cancel()

    def heard(self, key: str) -> tuple[float, int] | None:
        """(seconds since participant `key`'s last audio frame, frames received from it), or None if not an input."""
        inp = self.inputs.get(key)
        return None if inp is None else (time.monotonic() - inp.last_frame, inp.frames)

    async def _read(self, inp: _Input) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        max_samples = int(RATE * MAX_BUFFER_S)
        while True:
            try:
                frame = await inp.track.recv()
            except MediaStreamError:
                return
            if not isinstance(frame, av.AudioFrame):
                continue
            inp.last_frame = time.monotonic()
            inp.frames += 1
            if frame.format.name == "s16" and frame.layout.name == "stereo" and frame.sample_rate == RATE:
                # what aiortc's Opus decoder gives: the channels averaged (no resampler round trip)
                raw: npt.NDArray[np.int32] = frame.to_ndarray().reshape(-1).astype(np.int32)
                pcm = ((raw[0::2] + raw[1::2]) >> 1).astype(np.int16)
                inp.buffer = np.concatenate((inp.buffer, pcm))
            else:
                frame.pts = None  # a reconnect or a lost packet must not upset the resampler's timeline
                for out in resampler.resample(frame):
                    inp.buffer = np.concatenate((inp.buffer, out.to_ndarray().reshape(-1).astype(np.int16)))
            if len(inp.buffer) > max_samples:  # the network delivered a burst: keep latency bounded
                inp.buffer = inp.buffer[-PRIME:]

    def tick(self) -> None:
        """Mixes 20 ms and hands it to every output (called every 20 ms by the mixer's task)."""
        parts = {key: chunk for key, inp in self.inputs.items() if (chunk := inp.take()) is not None}
        total = np.zeros(SAMPLES, dtype=np.int32)
        for chunk in parts.values():
            total += chunk
        whole: Samples | None = None
        for out in self.outputs:
            own = parts.get(out.exclude) if out.exclude is not None else None
            if own is not None:
                out.push(np.clip(total - own, -32768, 32767).astype(np.int16))
            else:  # (everyone, or a participant not heard now: the same mix, made once)
                if whole is None:
                    whole = np.clip(total, -32768, 32767).astype(np.int16)
                out.push(whole)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while True:
            n += 1
            due = start + n * PTIME
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay > CATCH_UP * PTIME:  # far behind (a stalled loop): skip the lost time, do not burst
                log.debug("call mixer %.0f ms late: skipping", -delay * 1000)
                for out in self.outputs:
                    out.skip(int(-delay / PTIME) * SAMPLES)
                start, n = loop.time(), 0
            self.tick()
