"""Evidence cannot be written from input nor served once altered.

A detections message names its alarm; before the fix that name became a file path (`../incident-N/...`
replaced an incident's snapshot, `../../../x` wrote outside the evidence folder). Every stored evidence file
is checked against the SHA-256 recorded when it was saved: an altered file is refused (409), never served.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from sqlalchemy import update

from console.appkeys import DB, DETECTIONS, EVIDENCE, EXIT_ZONES, HAZARDS, INCIDENTS
from detectors.worker import topic
from dispatch.actor import Actor
from dispatch.hazard_models import HazardEvidence
from dispatch.hazard_uploads import Upload
from dispatch.models import ExitZone
from ingest.contract import AlarmDetection, AlarmIn, DetectionFrame, utcnow
from ingest.integrity import Verifier, confined, write_content_addressed
from tests.support import Api, Broker, RunningApp, base_config, publish, running_app, ws_client

TRAVERSALS = ["../incident-{id}/cam-1-snapshot", "../../../trav-pwned", "../../trav-pwned2",
              "{abs}/trav-abs", "..\\..\\trav-win", "detections/../../incident-{id}/cam-1-snapshot"]


def jpeg(color: tuple[int, int, int]) -> bytes:
    ok, buf = cv2.imencode(".jpg", np.full((90, 120, 3), color, np.uint8))
    assert ok
    return buf.tobytes()


def files_under(root: Path) -> dict[str, str]:
    """Every file below `root` (by relative path) with its SHA-256, database files aside."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in root.rglob("*") if p.is_file() and not p.name.startswith("firelink.db")}


def site(tmp_path: Path, db_url: str, broker: Broker | None) -> Any:
    camera = {"id": "cam-1", "unit_id": "school-1", "name": "大厅", "url": str(tmp_path / "none.avi")}
    return base_config(db_url, broker, cameras=[camera],
                       video={"evidence_dir": str(tmp_path / "site" / "var" / "evidence")},
                       detectors={"hard_negatives_dir": str(tmp_path / "site" / "var" / "negatives")})


async def incident_with_snapshot(app: RunningApp) -> tuple[int, bytes, str]:
    """An open incident of school-1 with a camera snapshot saved by the real recorder (hash in the record)."""
    service = app.app[INCIDENTS]
    await service.intake.ingest([AlarmIn(f"press-{time.monotonic_ns()}", "school-1", "one_key", "mqtt", utcnow())])
    incident_id = service.core.open_by_unit["school-1"].incident_id
    original = jpeg((10, 120, 10))
    base = {"incident_id": incident_id, "unit_id": "school-1", "opened_at": time.time(), "created": time.time(),
            "hold": False, "files": []}
    ef = await app.app[EVIDENCE].save_file(incident_id, base, "cam-1-snapshot.jpg", "cam-1", "snapshot",
                                           original, time.time())
    return incident_id, original, ef.file


async def test_traversal_alarm_ids_write_nothing_outside_and_replace_no_evidence(
        broker: Broker, db_url: str, tmp_path: Path) -> None:
    cfg = site(tmp_path, db_url, broker)
    evidence = tmp_path / "site" / "var" / "evidence"
    async with running_app(cfg) as app:
        incident_id, original, rel = await incident_with_snapshot(app)
        admin = Api(app.url)
        await admin.login("admin", "admin-pw")
        before = files_under(tmp_path / "site")
        attacker = jpeg((0, 0, 255))
        sent: list[str] = []
        async with ws_client(admin) as ws:
            for i, pattern in enumerate(TRAVERSALS):
                alarm_id = pattern.format(id=incident_id, abs=tmp_path)
                # for a configured unit and an unknown one, both with a frame
                for unit in ("school-1", "nowhere-unit"):
                    # what a hostile worker sends (the real worker validates its payload before publishing)
                    message = {"type": "video_fire", "alarm_id": f"{alarm_id}" if unit == "school-1" else
                               f"{alarm_id}-{i}", "camera_id": "cam-1", "unit_id": unit,
                               "ts": datetime.now(UTC).isoformat(), "confidence": 0.9,
                               "boxes": [[1, 2, 30, 40, 0.9, 1]], "width": 120, "height": 90,
                               "jpeg_b64": base64.b64encode(attacker).decode()}
                    await publish(broker, topic(cfg.mqtt.topic_prefix, "cam-1"), json.dumps(message))
                    sent.append(message["alarm_id"])
            # Over MQTT such ids are refused at the edge (no '/' or '\\' in a detection's alarm_id): every one is
            # a stored rejection, for a configured unit as for an unknown one.
            for _ in sent:
                await ws.next_matching(lambda e: e["type"] == "alarm.rejected")

            # The same through the in-process path (detectors in the core call the sink directly).
            sink = app.app[DETECTIONS]
            for i, pattern in enumerate(TRAVERSALS):
                for unit in ("school-1", "nowhere-unit"):
                    alarm_id = f"{pattern.format(id=incident_id, abs=tmp_path)}-sink-{unit}-{i}"
                    alarm = AlarmIn(alarm_id, unit, "video_fire", "video", utcnow(), device_id="cam-1")
                    await sink.handle(AlarmDetection(alarm, DetectionFrame(0.0, 0.9, (), 120, 90, attacker,
                                                                           raw_jpeg=attacker)))

        after = files_under(tmp_path / "site")
        new = {k: v for k, v in after.items() if k not in before}
        changed = {k for k in before if before[k] != after.get(k)}
        # Nothing outside the evidence folder, nothing replaced; the only new file is the attacker's frame,
        # stored once under its SHA-256 in evidence/detections/.
        attacker_sha = hashlib.sha256(attacker).hexdigest()
        assert changed == set(), changed
        assert set(new) == {f"var/evidence/detections/{attacker_sha}.jpg"}, new
        assert not await asyncio.to_thread(os.path.exists, tmp_path / "trav-abs.jpg")  # an absolute path
        assert (evidence / rel).read_bytes() == original

        # Accepted detections recorded their frame by content name on the incident; rejected ones nothing.
        detail = await admin.get(f"/api/incidents/{incident_id}")
        frames = [e["data"] for e in detail["timeline"] if e["action"] == "detection.frame"]
        assert frames and {f["file"] for f in frames} == {f"{attacker_sha}.jpg"}
        assert {f["sha256"] for f in frames} == {attacker_sha}
        served = await admin.http.get(f"{app.url}/api/evidence/{rel}")
        assert served.status == 200 and await served.read() == original
        await admin.close()


async def test_altered_evidence_file_is_refused(db_url: str, tmp_path: Path) -> None:
    cfg = site(tmp_path, db_url, None)
    evidence = tmp_path / "site" / "var" / "evidence"
    async with running_app(cfg, mqtt=False) as app:
        incident_id, original, rel = await incident_with_snapshot(app)
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        url = f"{app.url}/api/evidence/{rel}"
        async with officer.http.get(url) as ok:
            assert ok.status == 200 and await ok.read() == original

        # Altered in place (same size, one byte flipped): refused, not served.
        data = bytearray(original)
        data[len(data) // 2] ^= 0xFF
        (evidence / rel).write_bytes(bytes(data))
        async with officer.http.get(url) as resp:
            body = await resp.text()
            assert resp.status == 409, body
            assert "altered" in body and bytes(data).hex()[:32] not in body

        # Replaced together with the manifest's hash: the hash-chained record still disagrees → refused.
        forged = jpeg((0, 0, 255))
        (evidence / rel).write_bytes(forged)
        manifest = json.loads((evidence / f"incident-{incident_id}" / "manifest.json").read_text())
        for f in manifest["files"]:
            f["sha256"] = hashlib.sha256(forged).hexdigest()
        (evidence / f"incident-{incident_id}" / "manifest.json").write_text(json.dumps(manifest))
        async with officer.http.get(url) as resp:
            assert resp.status == 409

        # A file planted next to the evidence, in no manifest or record, is not evidence.
        (evidence / f"incident-{incident_id}" / "planted.jpg").write_bytes(forged)
        async with officer.http.get(f"{app.url}/api/evidence/incident-{incident_id}/planted.jpg") as resp:
            assert resp.status == 404

        # Restored: served again.
        (evidence / rel).write_bytes(original)
        manifest["files"][0]["sha256"] = hashlib.sha256(original).hexdigest()
        (evidence / f"incident-{incident_id}" / "manifest.json").write_text(json.dumps(manifest))
        async with officer.http.get(url) as resp:
            assert resp.status == 200 and await resp.read() == original

        # Hazard photos (kept in the database): altered bytes are refused too.
        view = await app.app[HAZARDS].create(
            unit_id="school-1", category="blocked_exit", source="patrol", actor=Actor("officer", "duty_officer"),
            photos=[Upload("p.jpg", "image/jpeg", original)])
        detail = await officer.get(f"/api/hazards/{view['id']}")
        evidence_id = detail["evidence"][0]["id"]
        async with officer.http.get(f"{app.url}/api/evidence/{evidence_id}") as resp:
            assert resp.status == 200 and await resp.read() == original
        async with app.app[DB].session() as s:
            await s.execute(update(HazardEvidence).where(HazardEvidence.id == evidence_id).values(data=forged))
            await s.commit()
        status, body = await officer.request("GET", f"/api/evidence/{evidence_id}")
        assert status == 409 and "altered" in body["error"]
        # ... and so are bytes whose row hash was rewritten to match: the record keeps the original's.
        async with app.app[DB].session() as s:
            await s.execute(update(HazardEvidence).where(HazardEvidence.id == evidence_id).values(
                sha256=hashlib.sha256(forged).hexdigest()))
            await s.commit()
        status, body = await officer.request("GET", f"/api/evidence/{evidence_id}")
        assert status == 409

        # An exit zone's clear reference (in the database) likewise.
        zone = "/api/cameras/cam-1/exit-zones/exit-1"
        status, _ = await officer.request("PUT", zone, {"polygon": [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]})
        assert status == 200
        await app.app[EXIT_ZONES].set_reference("cam-1", "exit-1", original, time.time(), 120, 90,
                                                Actor("officer", "duty_officer"))
        async with officer.http.get(f"{app.url}{zone}/reference.jpg") as resp:
            assert resp.status == 200 and await resp.read() == original
        async with app.app[DB].session() as s:
            await s.execute(update(ExitZone).values(reference_jpeg=forged))
            await s.commit()
        status, body = await officer.request("GET", f"{zone}/reference.jpg")
        assert status == 409 and "altered" in body["error"]
        await officer.close()


def test_confined_names_and_content_addressed_writes(tmp_path: Path) -> None:
    root = tmp_path / "evidence"
    for bad in ("", ".", "..", "../x", "a/b", "a\\b", "x\x00y", "/etc/passwd"):
        with pytest.raises(ValueError):
            confined(root, bad)
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError):
        confined(root, "link")
    name, digest = write_content_addressed(root, b"\xff\xd8abc", "jpg")
    assert name == f"{digest}.jpg" and (root / name).read_bytes() == b"\xff\xd8abc"
    with pytest.raises(ValueError):
        write_content_addressed(root, b"x", "../jpg")
    # a damaged copy under the content name is rewritten, not trusted
    (root / name).write_bytes(b"damaged")
    assert write_content_addressed(root, b"\xff\xd8abc", "jpg") == (name, digest)
    assert (root / name).read_bytes() == b"\xff\xd8abc"
    assert sorted(p.name for p in root.iterdir()) == sorted([name, "link"])  # no temporary files left


async def test_verifier_hashes_once_per_file_version(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"v1" * 1000)
    v = Verifier()
    good = hashlib.sha256(b"v1" * 1000).hexdigest()
    assert all(await asyncio.gather(*(asyncio.to_thread(v.verify, path, good) for _ in range(5))))
    hashed = v.hashed
    assert v.verify(path, good) and v.hashed == hashed  # remembered
    path.write_bytes(b"v2" * 1000)  # same size, new content: its ctime/mtime moved → hashed again, refused
    assert not v.verify(path, good)
    assert not v.verify(path, "not-a-digest") and not v.verify(tmp_path / "missing", good)
