"""Deliberate patches of aiortc, in one place: the audio level of every outgoing audio frame, vectorised; a leaner
VP8 encoder for the video the server sends.

aiortc's RTCRtpSender computes each 20 ms frame's level (RFC 6465, for the RTP header extension) in a pure-Python
loop over its samples: about 0.25 ms per stereo frame, 2.5 % of a core per call on this server's two outgoing
audio streams, the largest single Python cost of a call. `audio_level_dbov` computes the same value with numpy
(tests/calls/test_media.py checks it against aiortc's own for random frames); `install()` puts it where the sender
looks it up (`aiortc.rtp.compute_audio_level_dbov`, read at each call). Remove when aiortc's is fast.

aiortc's VP8 encoder (the phone's video re-encoded for each officer and the brigade) runs libvpx with its temporal
denoiser on (`noise-sensitivity` 4) at `cpu-used` -6. The server re-encodes a picture a phone has already
denoised and compressed; denoising it again costs about a fifth of the encoder's time for nothing visible.
`LeanVp8Encoder` opens libvpx as aiortc does (real-time, CBR at the congestion controller's bitrate, one token
partition) with the denoiser off and `cpu-used` -12; `install()` makes it what `aiortc.codecs.get_encoder` returns.
"""

from __future__ import annotations

import math
import multiprocessing

import av
import numpy as np
from aiortc import codecs, rtp
from aiortc.codecs import vpx
from av.frame import Frame

MAX_SAMPLE = 32767
MIN_LEVEL = -127
_original = rtp.compute_audio_level_dbov


def audio_level_dbov(frame: av.AudioFrame) -> int:
    """RFC 6465 Appendix A, as aiortc computes it (all samples of the first plane over `frame.samples`)."""
    samples = np.frombuffer(bytes(frame.planes[0]), dtype=np.int16).astype(np.float64)
    energy = float(np.dot(samples, samples))
    rms = math.sqrt(energy / (frame.samples * MAX_SAMPLE * MAX_SAMPLE))
    if rms <= 0:
        return MIN_LEVEL
    return round(min(max(20 * math.log10(rms), MIN_LEVEL), 0))


VP8_OPTIONS = {"cpu-used": "-12", "deadline": "realtime", "lag-in-frames": "0", "noise-sensitivity": "0",
               "overshoot-pct": "15", "partitions": "0", "static-thresh": "1", "undershoot-pct": "100"}


class LeanVp8Encoder(vpx.Vp8Encoder):
    """aiortc's Vp8Encoder whose libvpx is opened with VP8_OPTIONS (see the module)."""

    def encode(self, frame: Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        assert isinstance(frame, av.VideoFrame)
        codec, bitrate = self.codec, self.target_bitrate
        if codec is not None and (frame.width != codec.width or frame.height != codec.height
                                  or abs(bitrate - (codec.bit_rate or 0)) > 0.1 * (codec.bit_rate or 0)):
            codec = None  # (aiortc's own rule: a new size, or the bitrate off by more than 10 %)
        if codec is None:
            codec = av.CodecContext.create("libvpx", "w")
            codec.width, codec.height, codec.bit_rate, codec.pix_fmt = frame.width, frame.height, bitrate, "yuv420p"
            codec.gop_size, codec.qmin, codec.qmax = 3000, 2, 56
            codec.options = {**VP8_OPTIONS, "bufsize": str(bitrate), "minrate": str(bitrate),
                             "maxrate": str(bitrate)}
            codec.thread_count = vpx.number_of_threads(frame.width * frame.height, multiprocessing.cpu_count())
            self.codec = codec  # aiortc's encode finds it fitting and uses it
        return super().encode(frame, force_keyframe)


def install() -> None:
    rtp.compute_audio_level_dbov = audio_level_dbov
    codecs.Vp8Encoder = LeanVp8Encoder  # type: ignore[attr-defined]  # what get_encoder() makes for VP8


def original() -> object:
    """aiortc's own function (for the test that compares the two)."""
    return _original
