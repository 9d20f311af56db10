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
from aiortc import codecs
from aiortc.codecs import vpx
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from pydantic import ValidationError

from config.calls import CallsConfig
from ingest.calls.mixer import SAMPLES, AudioMixer
from ingest.calls.recorder import CallRecorder
from ingest.calls.testsrc import ToneTrack, read_stamp, stamp_frame
from ingest.calls.video import MAX_BEHIND, CallVideo, VideoFeed, snapshot_jpeg
from ingest.cameras.evidence import EvidenceStore
from tests.calls.support import track_seconds


class Camera(MediaStreamTrack):
    """A phone's camera as the server receives it: VP8 frames (av.Packet, as `aiortc_speedups.pass_through` hands
    them out) in real time at 15 fps, `count` of them, whose size changes half-way (a phone switching camera); a
    key frame at the start, at the size change and when asked (`keyframe`)."""

    kind = "video"

    def __init__(self, count: int, sizes: tuple[tuple[int, int], ...] = ((320, 240),)) -> None:
        super().__init__()
        self.count, self.sizes, self.n = count, sizes, 0
        self.t0 = time.monotonic()
        self.encoder = codecs.get_encoder(VP8)
        self.asked = 0
        self._key = False

    def keyframe(self) -> None:
        self.asked += 1
        self._key = True

    async def recv(self) -> av.Packet:  # type: ignore[override]
        if self.n >= self.count:
            await asyncio.Event().wait()  # no more frames (the call goes on without video)
        await asyncio.sleep(max(0.0, self.t0 + self.n / 15 - time.monotonic()))
        w, h = self.sizes[0] if self.n < self.count // 2 else self.sizes[-1]
        frame = stamp_frame(w, h, 1_700_000_000_000 + self.n, self.n)
        frame.pts, frame.time_base = self.n * 6000, fractions.Fraction(1, 90_000)
        payloads, timestamp = self.encoder.encode(frame, self._key)
        self._key = False
        self.n += 1
        packet = av.Packet(b"".join(vpx.vp8_depayload(p) for p in payloads))
        packet.pts, packet.time_base = timestamp, fractions.Fraction(1, 90_000)
        return packet


VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90_000, payloadType=96)


def camera_feed(camera: MediaStreamTrack | None) -> tuple[CallVideo, VideoFeed]:
    hub = CallVideo()
    if camera is not None:
        hub.set_source(camera, getattr(camera, "keyframe", None))
    return hub, hub.subscribe()


async def test_recording_keeps_both_tracks_in_step_across_a_camera_switch(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "call.webm")
    t0 = time.monotonic()
    hub, feed = camera_feed(Camera(30, ((640, 480), (480, 640))))  # 2 s of video: landscape, then portrait
    rec.start(ToneTrack(440), feed)
    await asyncio.sleep(3.0)  # the call lasts about 3 s (a recording is wall-clock time)
    done = await rec.stop()
    await hub.stop()
    lasted = time.monotonic() - t0
    assert not (tmp_path / "call.webm.part").exists()
    assert abs(done.duration_s - lasted) < 0.5 and abs(done.audio_s - lasted) < 0.5, (done, lasted)
    assert done.video_frames == 30 and (done.width, done.height) == (640, 480)
    with av.open(str(done.path)) as c:
        assert {(s.type, s.codec_context.name) for s in c.streams} == {("audio", "opus"), ("video", "vp8")}
        assert abs(c.duration / 1e6 - lasted) < 0.5
        # the last picture lasts until the recording's end (the camera stopped after 2 s)
        assert abs(track_seconds(c.streams.video[0]) - lasted) < 0.5
        frames = list(c.decode(video=0))
    # the phone's 30 pictures as it encoded them, both orientations (never scaled: copied)
    assert len(frames) == 30 and [(f.width, f.height) for f in frames] == [(640, 480)] * 15 + [(480, 640)] * 15
    assert [read_stamp(f) for f in frames[:15]] == [1_700_000_000_000 + n for n in range(15)]  # (640-wide stamps)


async def test_recording_without_any_video_is_still_a_playable_video(tmp_path: Path) -> None:
    rec = CallRecorder(tmp_path / "audio-only.webm")
    hub, feed = camera_feed(None)
    rec.start(ToneTrack(440), feed)
    await asyncio.sleep(1.0)
    done = await rec.stop()
    await hub.stop()
    with av.open(str(done.path)) as c:
        assert {s.type for s in c.streams} == {"audio", "video"}
        assert abs(c.duration / 1e6 - 1.0) < 0.3
        assert len(list(c.decode(video=0))) == 1


async def test_a_late_viewer_starts_on_a_key_frame_and_a_slow_one_skips_to_the_next() -> None:
    camera = Camera(1000)
    hub, early = camera_feed(camera)
    await early.next()  # the phone's first frame: a key frame
    assert camera.asked >= 1  # (a subscriber asks for a key frame when it joins)
    while True:  # the stream goes on with inter frames
        pkt = await early.next()
        if not pkt.key:
            break
    asked = camera.asked
    late = hub.subscribe()  # joins mid-stream: the phone is asked, and the viewer waits for the key frame
    first = await late.next()
    assert first.key and camera.asked > asked
    snapshot = await asyncio.to_thread(snapshot_jpeg, list(hub.gop))  # decoded from the frames since the key frame
    assert snapshot is not None and snapshot.startswith(b"\xff\xd8")
    mark = hub.frames
    while hub.frames < mark + MAX_BEHIND + 2:  # `late` stops reading for a while; frames keep coming
        await early.next()
    assert late.skipped == 1  # it dropped what it could not take ...
    pkt = await late.next()
    assert pkt.key  # ... and goes on from the key frame it asked for
    await hub.stop()


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


async def test_an_offer_without_vp8_video_is_refused_with_the_reason() -> None:
    from aiortc import RTCPeerConnection, RTCRtpSender

    from ingest.calls.room import BadOffer, MediaRoom

    pc = RTCPeerConnection()
    video = pc.addTransceiver("video", direction="sendonly")
    video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"])
    await pc.setLocalDescription(await pc.createOffer())
    room = MediaRoom()
    try:
        with pytest.raises(BadOffer, match="video"):  # the server forwards VP8 as it is: it cannot take H.264
            await room.join("unit", pc.localDescription.sdp, sends_video=True)
        assert room.peers == {}
    finally:
        await room.close()
        await pc.close()


async def test_an_audio_only_participant_joins() -> None:
    from ingest.calls.room import MediaRoom
    from ingest.calls.testsrc import ClientPeer

    room, peer = MediaRoom(), ClientPeer(audio=ToneTrack(440))  # e.g. a console without video
    try:
        answer = await room.join("officer", await peer.offer(), sends_video=False)
        assert "m=video" not in answer
        await peer.accept(answer)
        await peer.connected()
    finally:
        await peer.close()
        await room.close()
