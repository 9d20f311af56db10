"""Deliberate patches of aiortc, in one place: the audio level of every outgoing audio frame, vectorised; received
video handed out encoded (not decoded) where the call asks for it; a viewer's picture-loss report passed on.

aiortc's RTCRtpSender computes each 20 ms frame's level (RFC 6465, for the RTP header extension) in a pure-Python
loop over its samples: about 0.25 ms per stereo frame, 2.5 % of a core per call on this server's two outgoing
audio streams, the largest single Python cost of a call. `audio_level_dbov` computes the same value with numpy
(tests/calls/test_media.py checks it against aiortc's own for random frames); `install()` puts it where the sender
looks it up (`aiortc.rtp.compute_audio_level_dbov`, read at each call). Remove when aiortc's is fast.

The server forwards the phone's VP8 as it was encoded (ingest.calls.video). aiortc's RTCRtpReceiver reassembles
each frame in its jitter buffer and hands it to a decoder thread (`aiortc.rtcrtpreceiver.decoder_worker`, looked up
when the receiver starts); `decoder_worker` here hands a frame of a track marked with `pass_through(track)` on as
an av.Packet (its bytes, the RTP timestamp) instead of decoding it, and decodes every other track as aiortc does.
aiortc's senders already send av.Packets as they are (packetised, no encoder). A viewer's PLI or FIR reaches its
RTCRtpSender, which would force its encoder to a key frame; `install()` makes it call the track's
`request_keyframe()` when the track has one (ingest.calls.video.VideoFeed asks the phone).
"""

from __future__ import annotations

import asyncio
import fractions
import math
import queue
import threading
from typing import Any

import av
import numpy as np
from aiortc import rtcrtpreceiver, rtcrtpsender, rtp
from aiortc.mediastreams import MediaStreamTrack

MAX_SAMPLE = 32767
MIN_LEVEL = -127
PASS_THROUGH = "firelink_pass_through"  # attribute set on a receiver track's queue
RTP_TIME_BASE = fractions.Fraction(1, 90_000)
_original = rtp.compute_audio_level_dbov
_decoder_worker = rtcrtpreceiver.decoder_worker
_send_keyframe = rtcrtpsender.RTCRtpSender._send_keyframe


def audio_level_dbov(frame: av.AudioFrame) -> int:
    """RFC 6465 Appendix A, as aiortc computes it (all samples of the first plane over `frame.samples`)."""
    samples = np.frombuffer(bytes(frame.planes[0]), dtype=np.int16).astype(np.float64)
    energy = float(np.dot(samples, samples))
    rms = math.sqrt(energy / (frame.samples * MAX_SAMPLE * MAX_SAMPLE))
    if rms <= 0:
        return MIN_LEVEL
    return round(min(max(20 * math.log10(rms), MIN_LEVEL), 0))


def pass_through(track: MediaStreamTrack) -> None:
    """From now on `track` (an aiortc receiver's video track) yields its encoded frames as av.Packet."""
    setattr(track._queue, PASS_THROUGH, True)  # type: ignore[attr-defined]


def decoder_worker(loop: asyncio.AbstractEventLoop, input_q: queue.Queue[Any], output_q: asyncio.Queue[Any],
                   decode_error: threading.Event) -> None:
    """aiortc's decoder thread, given only the frames to decode: those of a `pass_through` track go on as they
    are (the mark is read for each frame, so it may be set after the thread started)."""

    class Undecoded:
        def get(self) -> Any:
            while True:
                task = input_q.get()
                if task is None or not getattr(output_q, PASS_THROUGH, False):
                    return task
                _codec, encoded = task
                packet = av.Packet(encoded.data)
                packet.pts, packet.time_base = encoded.timestamp, RTP_TIME_BASE
                asyncio.run_coroutine_threadsafe(output_q.put(packet), loop)

    _decoder_worker(loop, Undecoded(), output_q, decode_error)  # type: ignore[arg-type]


def send_keyframe(self: rtcrtpsender.RTCRtpSender) -> None:
    request = getattr(self.track, "request_keyframe", None)
    if callable(request):
        request()
    else:
        _send_keyframe(self)


def install() -> None:
    rtp.compute_audio_level_dbov = audio_level_dbov
    rtcrtpreceiver.decoder_worker = decoder_worker
    rtcrtpsender.RTCRtpSender._send_keyframe = send_keyframe  # type: ignore[method-assign]


def original() -> object:
    """aiortc's own function (for the test that compares the two)."""
    return _original
