"""End to end through real parts: device → Mosquitto → core → database → WebSocket → dispatch → agency."""

from __future__ import annotations

import uuid

from tests.support import Api, Broker, WebhookReceiver, base_config, publish, running_app, ws_client


async def test_button_press_reaches_console_and_dispatch_reaches_brigade(
        broker: Broker, db_url: str, receiver: WebhookReceiver) -> None:
    cfg = base_config(db_url, broker, webhook_url=receiver.url)
    async with running_app(cfg) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            alarm_id = f"a-{uuid.uuid4().hex}"
            await publish(broker, f"{cfg.mqtt.topic_prefix}/units/school-1/alarm",
                          {"alarm_id": alarm_id, "kind": "one_key", "device_id": "btn-1"})
            created = await ws.next_matching(lambda e: e["type"] == "incident.created")
            inc = created["incident"]
            assert inc["unit"]["name"] == "第一小学"
            assert inc["unit"]["contact_phone"] == "13800000001"
            assert inc["status"] == "new" and inc["kind"] == "one_key"

            # The alarm is in the database (not only on the bus).
            detail = await officer.get(f"/api/incidents/{inc['id']}")
            assert [a["alarm_id"] for a in detail["alarms"]] == [alarm_id]

            await officer.post(f"/api/incidents/{inc['id']}/ack")
            result = await officer.post(f"/api/incidents/{inc['id']}/dispatch", {"agencies": ["fire", "medical"]})
            assert {d["agency"] for d in result["dispatches"]} == {"fire", "medical"}
            assert result["status"] == "dispatched"

            await receiver.wait_for(2)
            assert all(receiver.signature_ok)
            bodies = sorted((r.json for r in receiver.received), key=lambda b: b["agency"])
            assert bodies[0]["agency"] == "fire" and bodies[0]["unit"]["address"] == "城北路18号"
            assert bodies[0]["incident_id"] == inc["id"]

            delivered = await ws.next_matching(
                lambda e: e["type"] == "dispatch.updated" and e["dispatch"]["status"] == "delivered")
            assert delivered["dispatch"]["delivered_at"]

            brigade = Api(app.url)
            await brigade.login("brigade", "brigade-pw")
            fire_dispatch = next(d for d in result["dispatches"] if d["agency"] == "fire")
            await brigade.post(f"/api/dispatches/{fire_dispatch['id']}/ack")
            await brigade.post(f"/api/dispatches/{fire_dispatch['id']}/on_scene")
            await officer.post(f"/api/incidents/{inc['id']}/close", {"outcome": "resolved", "note": "已扑灭"})

            detail = await officer.get(f"/api/incidents/{inc['id']}")
            actions = [e["action"] for e in detail["timeline"]]
            for expected in ("alarm.received", "incident.created", "incident.acknowledged", "dispatch.created",
                             "dispatch.sent", "dispatch.delivered", "dispatch.acknowledged", "dispatch.on_scene",
                             "incident.on_scene", "incident.closed"):
                assert expected in actions, (expected, actions)
            times = detail["response_times"]
            assert times["alarm_to_ack_s"] is not None and times["alarm_to_ack_s"] >= 0
            assert times["alarm_to_dispatch_s"] >= times["alarm_to_ack_s"]
            assert detail["status"] == "closed" and detail["outcome"] == "resolved"
            await brigade.close()
        await officer.close()
