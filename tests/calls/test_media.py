"""The call's media parts on their own: the recorder, the mixer, retention of recordings, ICE configuration."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from pydantic import ValidationError

from config.calls import CallsConfig
from ingest.calls.mixer import SAMPLES, AudioMixer
from ingest.calls.recorder import CallRecorder
from ingest.calls.testsrc import ToneTrack, read_stamp, stamp_frame
from ingest.cameras.evidence import EvidenceStore


class Frames(MediaStreamTrack):
    """Video frames in real time at 15 fps whose size changes half-way (a phone switching camera)."""

    kind = "video"

    def __init__(self, count: int, sizes: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.count, self.sizes, self.n = count, sizes, 0
        self.t0 = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        if self.n >= self.count:
            await asyncio.Event().wait()  # no more frames (the call goes on without video)
        await asyncio.sleep(max(0.0, self.t0 + self.n / 15 - time.monotonic()))
        w, h = self.sizes[0] if self.n < self.count // 2 else self.sizes[-1]
        frame = stamp_frame(w, h, 1_700_000_000_000 + self.n, self.n)
        frame.pts, frame.time_base = self.n * 6000, fractions.Fraction(1, 90_000)
        self.n += 1
        return frame


class Silent(MediaStreamTrack):
    kind = "video"

    async def recv(self) -> av.VideoFrame:
        await asyncio.Event().wait()
        raise MediaStreamError


async def test_recording_keeps_both_tracks_in_step_across_a_camera_switch(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.mp4", preset="ultrafast")
    t0 = time.monotonic()
    rec.start(ToneTrack(440), Frames(30, ((640, 480), (480, 640))))  # 2 s of video: landscape, then portrait
    await asyncio.sleep(3.0)  # the call lasts about 3 s (a recording is wall-clock time)
    done = await rec.stop()
    lasted = time.monotonic() - t0
    assert not (tmp_path / "call.mp4.part").exists()
    assert abs(done.duration_s - lasted) < 0.5 and abs(done.audio_s - lasted) < 0.5, (done, lasted)
    assert done.video_frames == 30 and (done.width, done.height) == (640, 480)
    with av.open(str(done.path)) as c:
        assert {s.type for s in c.streams} == {"audio", "video"}
        assert abs(c.duration / 1e6 - lasted) < 0.5
        video = c.streams.video[0]
        assert video.duration is not None and abs(float(video.duration * video.time_base) - lasted) < 0.5
        frames = list(c.decode(video=0))
    # the 30 pictures, then the last held until the recording's end (the camera stopped after 2 s)
    assert len(frames) == 31 and {(f.width, f.height) for f in frames} == {(640, 480)}
    assert read_stamp(frames[3]) == 1_700_000_000_003  # the picture survived the encoding
    assert read_stamp(frames[30]) == read_stamp(frames[29])


async def test_recording_without_any_video_is_still_a_playable_video(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "audio-only.mp4", preset="ultrafast")
    rec.start(ToneTrack(440), Silent())
    await asyncio.sleep(1.0)
    done = await rec.stop()
    with av.open(str(done.path)) as c:
        assert {s.type for s in c.streams} == {"audio", "video"}
        assert abs(c.duration / 1e6 - 1.0) < 0.3


async def test_the_mixer_gives_each_participant_everyone_but_itself() -> None:
    mixer = AudioMixer()
    a, b = ToneTrack(400, level=0.2), ToneTrack(1000, level=0.2)  # whole periods in 20 ms: no leakage
    mixer.add_input("a", a)
    mixer.add_input("b", b)
    hears_a, hears_b, everyone = mixer.output("a"), mixer.output("b"), mixer.output(None)
    await asyncio.sleep(0.2)  # the inputs fill their buffers (real-time tracks)
    for _ in range(10):
        mixer.tick()
    mixer.remove_input("a")
    mixer.remove_input("b")

    async def last(out: MediaStreamTrack) -> np.ndarray:
        frame = None
        while out._queue.qsize():  # type: ignore[attr-defined]
            frame = await out.recv()
        assert isinstance(frame, av.AudioFrame) and frame.samples == SAMPLES
        return frame.to_ndarray().reshape(-1)[::2].astype(np.float64) / 32768  # (stereo, both channels alike)

    def tone(pcm: np.ndarray, freq: float) -> float:
        spectrum = np.abs(np.fft.rfft(pcm))
        return float(spectrum[int(freq * len(pcm) / 48_000)])

    pa, pb, pall = await last(hears_a), await last(hears_b), await last(everyone)
    assert tone(pa, 1000) > 50 * max(tone(pa, 400), 0.01)  # a hears b only
    assert tone(pb, 400) > 50 * max(tone(pb, 1000), 0.01)  # b hears a only
    assert tone(pall, 400) > 10 and tone(pall, 1000) > 10  # the recording hears both
    await mixer.stop()


def test_a_folder_with_a_call_recording_outlives_the_video_retention(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    now = 1_800_000_000.0
    for incident, keep in ((1, None), (2, now + 100 * 86400)):
        store.write_manifest(incident, {"incident_id": incident, "created": now - 120 * 86400, "files": []})
        if keep is not None:
            store.keep_until(incident, keep)
    assert store.purge(retention_days=90, now=now) == [1]  # the clips' folder goes, the call's stays
    assert store.purge(retention_days=90, now=now + 101 * 86400) == [2]  # ... until its own time has passed


def test_calls_config_keeps_recordings_six_months_and_secrets_secret() -> None:
    with pytest.raises(ValidationError, match="183"):
        CallsConfig(retention_days=90)
    cfg = CallsConfig.model_validate({"ice_servers": [
        {"urls": ["turn:turn.example.org:3478"], "username": "u", "credential": "fixed-pass"},
        {"urls": ["turns:turn.example.org:5349?transport=tcp"], "shared_secret": "s3cret"}]})
    assert "fixed-pass" not in repr(cfg) and "s3cret" not in cfg.model_dump_json()
    assert json.loads(cfg.model_dump_json())["retention_days"] == 183
    for bad in ({"urls": ["http://turn"]}, {"urls": ["turn:x"], "username": "u"},
                {"urls": ["turn:x"], "username": "u", "credential": "p", "shared_secret": "s"}):
        with pytest.raises(ValidationError):
            CallsConfig.model_validate({"ice_servers": [bad]})


def test_the_vectorised_audio_level_is_aiortcs() -> None:
    from ingest.calls import aiortc_speedups

    original = aiortc_speedups.original()
    rng = np.random.default_rng(15)
    for layout, scale in (("stereo", 20000), ("mono", 300), ("stereo", 3), ("mono", 0)):
        channels = 2 if layout == "stereo" else 1
        pcm = (rng.standard_normal((1, 960 * channels)) * scale).clip(-32768, 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout=layout)
        frame.sample_rate = 48_000
        assert aiortc_speedups.audio_level_dbov(frame) == original(frame)  # type: ignore[operator]


def test_the_lean_vp8_encoder_is_what_aiortc_sends_with_and_its_pictures_decode() -> None:
    from aiortc import codecs
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    from ingest.calls import aiortc_speedups

    aiortc_speedups.install()
    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)
    encoder = codecs.get_encoder(vp8)
    assert isinstance(encoder, aiortc_speedups.LeanVp8Encoder)
    decoder = codecs.get_decoder(vp8)
    decoded: list[av.VideoFrame] = []
    for n in range(10):
        frame = stamp_frame(640, 480, 1_700_000_000_000 + n, n)
        frame.pts, frame.time_base = n * 3000, fractions.Fraction(1, 90_000)
        payloads, timestamp = encoder.encode(frame)
        assert abs(timestamp - n * 3000) <= 1
        data = b"".join(codecs.vpx.vp8_depayload(p) for p in payloads)
        decoded += [f for f in decoder.decode(JitterFrame(data=data, timestamp=timestamp))
                    if isinstance(f, av.VideoFrame)]
    assert len(decoded) == 10 and read_stamp(decoded[-1]) == 1_700_000_000_009


async def test_the_recording_keeps_at_most_its_frame_rate(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.mp4", preset="ultrafast", fps=5)
    rec.start(ToneTrack(440), Frames(30, ((320, 240),)))  # 15 fps for 2 s
    await asyncio.sleep(2.5)
    done = await rec.stop()
    assert 9 <= done.video_frames <= 11, done  # 5 a second of the 15
    with av.open(str(done.path)) as c:
        assert {s.type for s in c.streams} == {"audio", "video"}
        assert abs((c.duration or 0) / 1e6 - done.duration_s) < 0.3
