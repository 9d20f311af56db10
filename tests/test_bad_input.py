"""Bad input gets a clear error, is recorded and counted, and changes nothing."""

from __future__ import annotations

import json
import uuid

from console.appkeys import INCIDENTS
from tests.support import Api, Broker, base_config, publish, running_app, ws_client

GOOD = {"alarm_id": "placeholder", "kind": "one_key"}


async def test_malformed_mqtt_messages_are_rejected_with_reasons_and_the_core_keeps_working(
        broker: Broker, db_url: str) -> None:
    cfg = base_config(db_url, broker)
    p = cfg.mqtt.topic_prefix
    bad: list[tuple[str, bytes, str]] = [
        (f"{p}/units/school-1/alarm", b"{not json", "malformed JSON"),
        (f"{p}/units/school-1/alarm", b"[1,2]", "JSON object"),
        (f"{p}/units/school-1/alarm", json.dumps({"alarm_id": 5, "kind": "one_key"}).encode(), "alarm_id"),
        (f"{p}/units/school-1/alarm", json.dumps({"alarm_id": "x1", "kind": "explosion"}).encode(), "kind"),
        (f"{p}/units/school-1/alarm", json.dumps({"alarm_id": "x2", "kind": "one_key", "extra": 1}).encode(),
         "extra"),
        (f"{p}/units/school-1/alarm", json.dumps({"alarm_id": "x3", "kind": "smoke",
                                                  "note": "x" * 70_000}).encode(), "too large"),
        (f"{p}/units/no-such-unit/alarm", json.dumps({"alarm_id": "x4", "kind": "one_key"}).encode(),
         "unknown unit"),
        (f"{p}/units/school-1/alarms", json.dumps({"alarm_id": "x5", "kind": "one_key"}).encode(), "unknown topic"),
        (f"{p}/units/school-1/alarm", b"\xff\xfe\x00garbage", "malformed JSON"),
        (f"{p}/devices/ghost/status", json.dumps({"status": "online"}).encode(), "unknown device"),
    ]
    async with running_app(cfg) as app:
        admin = Api(app.url)
        await admin.login("admin", "admin-pw")
        async with ws_client(admin) as ws:
            for topic, payload, _ in bad:
                await publish(broker, topic, payload)
            for _ in bad:
                await ws.next_matching(lambda e: e["type"] == "alarm.rejected")
            good_id = f"ok-{uuid.uuid4().hex}"
            await publish(broker, f"{p}/units/school-1/alarm", {**GOOD, "alarm_id": good_id})
            created = await ws.next_matching(lambda e: e["type"] == "incident.created")
            assert created["incident"]["alarm_count"] == 1

        rejections = await admin.get("/api/admin/rejections")
        assert rejections["total"] == len(bad)
        # alarms have their own lane in the intake, so rejections are not stored in publication order
        reasons = [r["reason"] for r in rejections["items"]]
        for _topic, _payload, expected in bad:
            match = next((r for r in reasons if expected in r), None)
            assert match is not None, (expected, reasons)
            reasons.remove(match)
        assert rejections["counters"]["rejected"] == len(bad)
        incidents = await admin.get("/api/incidents?state=all")
        assert len(incidents) == 1  # only the good alarm made an incident
        detail = await admin.get(f"/api/incidents/{incidents[0]['id']}")
        assert [a["alarm_id"] for a in detail["alarms"]] == [good_id]
        await admin.close()


async def test_duplicate_alarm_ids_are_absorbed(broker: Broker, db_url: str) -> None:
    cfg = base_config(db_url, broker)
    async with running_app(cfg) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            topic = f"{cfg.mqtt.topic_prefix}/units/school-1/alarm"
            await publish(broker, topic, {"alarm_id": "dup-1", "kind": "one_key"})
            await publish(broker, topic, {"alarm_id": "dup-1", "kind": "one_key"})
            await publish(broker, topic, {"alarm_id": "dup-2", "kind": "smoke"})
            await ws.next_matching(lambda e: e["type"] == "incident.created")
            updated = await ws.next_matching(lambda e: e["type"] == "incident.updated")
            assert updated["incident"]["alarm_count"] == 2  # dup-1 once, dup-2 joined
        assert app.app[INCIDENTS].core.counters["alarms_duplicate"] == 1
        await officer.close()


async def test_bad_api_requests_get_4xx_and_change_nothing(db_url: str) -> None:
    cfg = base_config(db_url, None)
    async with running_app(cfg, mqtt=False) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        pressed = await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
        inc = pressed["incident_id"]
        cases = [
            ("POST", f"/api/incidents/{inc}/dispatch", {"agencies": ["police"]}, 400),
            ("POST", f"/api/incidents/{inc}/dispatch", {"agencies": []}, 400),
            ("POST", f"/api/incidents/{inc}/dispatch", {}, 400),
            ("POST", f"/api/incidents/{inc}/close", {"outcome": "maybe"}, 400),
            ("POST", f"/api/incidents/{inc}/close", {"outcome": "resolved", "bogus": 1}, 400),
            ("POST", f"/api/incidents/{inc}/messages", {"text": ""}, 400),
            ("POST", f"/api/incidents/{inc}/messages", {"text": "x" * 2001}, 400),
            ("POST", "/api/units/no-such-unit/alarm", {}, 404),
            ("GET", "/api/incidents/abc", None, 400),
            ("GET", "/api/incidents/0", None, 400),
            ("GET", "/api/incidents/999999", None, 404),
            ("POST", "/api/incidents/999999/ack", None, 404),
            ("GET", "/api/incidents?state=sideways", None, 400),
            ("GET", "/api/incidents?limit=ten", None, 400),
            ("GET", "/api/no-such-route", None, 404),
        ]
        for method, path, body, expected in cases:
            status, result = await officer.request(method, path, body)
            assert status == expected, (method, path, status, result)
            assert isinstance(result, dict) and result.get("error"), (path, result)
        status, result = await officer.request("POST", f"/api/incidents/{inc}/close", raw=b"{oops")
        assert status == 400 and "JSON" in result["error"]
        status, result = await officer.request("POST", f"/api/incidents/{inc}/close",
                                               raw=b'{"outcome":"resolved","note":"' + b"x" * 70_000 + b'"}')
        assert status == 413
        detail = await officer.get(f"/api/incidents/{inc}")
        assert detail["status"] == "new" and detail["dispatches"] == []

        await officer.post(f"/api/incidents/{inc}/close", {"outcome": "false_alarm", "note": "误按"})
        status, result = await officer.request("POST", f"/api/incidents/{inc}/close", {"outcome": "resolved"})
        assert status == 409
        status, result = await officer.request("POST", f"/api/incidents/{inc}/dispatch", {"agencies": ["fire"]})
        assert status == 409
        detail = await officer.get(f"/api/incidents/{inc}")
        assert detail["outcome"] == "false_alarm" and detail["dispatches"] == []
        await officer.close()
