"""Fast unit tests: URL redaction, camera config, health logic, evidence store, broadcast."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.cameras import CameraConfig, VideoConfig, redact_url
from ingest.cameras.capture import CameraCapture, ReconnectBackoff, Status, redact
from ingest.cameras.evidence import EvidenceStore, FrameRing, parse_time
from ingest.cameras.hub import Broadcast, EncodedFrame


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:pa55@10.0.0.5:554/Streaming/101", "rtsp://***@10.0.0.5:554/Streaming/101"),
        ("rtsp://admin@10.0.0.5/x", "rtsp://***@10.0.0.5/x"),
        ("http://u:p%40ss@cam.local/mjpg/video.mjpg", "http://***@cam.local/mjpg/video.mjpg"),
        ("http://cam/snap.cgi?user=admin&pwd=secret&res=1", "http://cam/snap.cgi?user=***&pwd=***&res=1"),
        ("rtsp://10.0.0.5/live", "rtsp://10.0.0.5/live"),
        ("rtsp://a:b:c@d@host/x", "rtsp://***@host/x"),
        ("/var/clips/vtest.avi", "/var/clips/vtest.avi"),
        ("0", "0"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_camera_config_credentials() -> None:
    cam = CameraConfig(
        id="c1", unit_id="u", name="n", url="rtsp://10.0.0.5:554/s", username="ad min", password="p@ss:w/d"
    )
    assert cam.source_url() == "rtsp://ad%20min:p%40ss%3Aw%2Fd@10.0.0.5:554/s"
    assert cam.display_url() == "rtsp://10.0.0.5:554/s"
    assert "p@ss" not in repr(cam) and "p@ss" not in str(cam.model_dump())
    msg = redact("failed to open " + cam.source_url() + " with p@ss:w/d", cam)
    assert "p@ss" not in msg and "p%40ss" not in msg
    with pytest.raises(ValidationError, match="either in the URL"):
        CameraConfig(id="c1", unit_id="u", name="n", url="rtsp://a:b@h/s", username="x")
    with pytest.raises(ValidationError, match="Extra inputs"):
        CameraConfig.model_validate({"id": "c1", "unit_id": "u", "name": "n", "url": "0", "fsp": 5})
    with pytest.raises(ValidationError):
        CameraConfig(id="c1", unit_id="u", name="n", url="0", reconnect_initial_s=5, reconnect_max_s=1)
    assert CameraConfig(id="s", unit_id="u", name="n", url="http://cam/snapshot.jpg").effective_mode == "snapshot"
    assert CameraConfig(id="s", unit_id="u", name="n", url="http://cam/video.mjpg").effective_mode == "stream"
    for model in (CameraConfig, VideoConfig):
        for name, field in model.model_fields.items():
            assert field.title and field.description, f"{model.__name__}.{name} needs title+description"


def test_health_state_machine() -> None:
    cfg = CameraConfig(id="c", unit_id="u", name="n", url="0", offline_after_s=3, frozen_after_s=5, dark_after_s=5)
    cap = CameraCapture(cfg, lambda ts, f: None)
    t0 = cap.started_mono
    assert cap.health(t0 + 1).status == Status.STARTING
    cap.attempts, cap.last_error = 1, "connection refused"
    assert cap.health(t0 + 1).status == Status.RECONNECTING
    h = cap.health(t0 + 3.5)
    assert h.status == Status.OFFLINE and h.is_fault and "connection refused" in (h.fault or "")
    cap.attempts, cap.last_error, cap.connected, cap.last_frame_mono = 0, None, True, t0 + 4
    assert cap.health(t0 + 4.5).status == Status.ONLINE
    cap.identical_since = t0 + 4
    assert cap.health(t0 + 6).status == Status.ONLINE
    assert cap.health(t0 + 6.9).status == Status.ONLINE
    cap.last_frame_mono = t0 + 9
    assert cap.health(t0 + 9.1).status == Status.FROZEN
    cap.identical_since, cap.dark_since, cap.dark_reason = None, t0 + 4, "picture too dark"
    assert cap.health(t0 + 9.1).status == Status.DARK
    assert cap.health(t0 + 20).status == Status.OFFLINE  # no frame for 11 s beats everything
    disabled = CameraCapture(cfg.model_copy(update={"enabled": False}), lambda ts, f: None)
    assert disabled.health().status == Status.DISABLED


async def test_broadcast_keeps_newest_and_never_blocks_publisher() -> None:
    b: Broadcast[int] = Broadcast()
    for i in range(1000):  # nobody reading: nothing queues up
        b.publish(i)
    got = await b.wait_newer(0)
    assert got == (1000, 999)
    waiter = asyncio.create_task(b.wait_newer(1000))
    await asyncio.sleep(0)
    b.publish(1000)
    assert await waiter == (1001, 1000)
    late = asyncio.create_task(b.wait_newer(1001))
    await asyncio.sleep(0)
    b.close()
    assert await late is None


def test_frame_ring_window() -> None:
    ring = FrameRing(keep_s=3)
    collected: list[EncodedFrame] = []
    ring.collectors.append(collected)
    for i in range(100):
        ring.add(EncodedFrame(1000 + i * 0.1, b"x", 2, 2))
    assert ring.frames[0].ts >= ring.frames[-1].ts - 3
    assert len(collected) == 100
    near = ring.nearest(1009.0)
    assert near is not None and abs(near.ts - 1009.0) < 0.06
    assert parse_time("2024-05-01T08:00:00+08:00") == parse_time("2024-05-01T00:00:00Z")


def test_evidence_store_retention_hold_and_paths(tmp_path: Path) -> None:
    store = EvidenceStore(tmp_path)
    now = time.time()
    for iid, age_days in ((1, 100), (2, 100), (3, 10)):
        store.write_manifest(iid, {"incident_id": iid, "unit_id": "u", "created": now - age_days * 86400,
                                   "hold": False, "files": []})  # fmt: skip
        (store.incident_dir(iid) / "c-snapshot.jpg").write_bytes(b"jpeg")
    assert store.set_hold(2, True, "hazard case 7")
    assert sorted(store.purge(90, now)) == [1]
    assert not store.incident_dir(1).exists() and store.incident_dir(2).exists() and store.incident_dir(3).exists()
    assert json.loads((store.incident_dir(2) / "manifest.json").read_text())["hold_reason"] == "hazard case 7"
    assert store.resolve("incident-3/c-snapshot.jpg") == store.incident_dir(3) / "c-snapshot.jpg"
    for bad in ("incident-3/manifest.json", "incident-3/../incident-2/c-snapshot.jpg", "../etc/passwd",
                "incident-3", "incident-9/c-snapshot.jpg", "/etc/passwd"):  # fmt: skip
        assert store.resolve(bad) is None, bad


def test_lag_meter_detects_backlog_but_not_clock_drift() -> None:
    from ingest.cameras.capture import _LagMeter

    m = _LagMeter()
    # live edge: each read waited for the frame; the stream clock drifts 1 %/frame from ours
    for i in range(50):
        assert m.update(100 + i * 0.101, 1000 + i * 100, waited=True) == pytest.approx(0, abs=1e-9)
    # decoding stalls for 1.5 s, then reads return at once (backlog): lag shows, then shrinks
    behind = [m.update(106.6 + i * 0.01, 1000 + (50 + i) * 100, waited=False) for i in range(10)]
    assert behind[0] > 1.4 and behind[-1] < behind[0]
    # a timestamp restart (new RTSP session) rebases instead of reading as lag
    assert m.update(200, 0, waited=False) == 0
    assert m.update(200.1, 100, waited=True) == pytest.approx(0, abs=1e-9)


def test_reconnect_backoff_starts_over_after_video() -> None:
    b = ReconnectBackoff(0.5, 30.0)
    outage = [b.after_failure(had_video=False) for _ in range(9)]  # a long outage climbs to the ceiling
    assert outage == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    # video came back, then a short blip: the first retry is the short wait again, and it climbs anew
    assert b.after_failure(had_video=True) == 0.5
    assert [b.after_failure(had_video=False) for _ in range(3)] == [1.0, 2.0, 4.0]
