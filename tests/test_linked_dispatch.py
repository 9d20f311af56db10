"""Linked dispatch out: signed webhooks retried until delivered, MQTT channel, agency answers over MQTT."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from console.appkeys import INCIDENTS
from dispatch.actor import Actor
from ingest.contract import AlarmIn, utcnow
from notify.channels.webhook import safe_target
from notify.signing import IDEMPOTENCY_HEADER, encode_body, sign, verify
from tests.support import Api, Broker, WebhookReceiver, base_config, publish, running_app, ws_client

OFFICER = Actor("officer", "duty_officer")


class Subscriber:
    """A real MQTT client standing in for an agency's or leader's listener."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        subscribed = asyncio.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}")
        self.client.on_message = lambda _c, _u, m: loop.call_soon_threadsafe(self.queue.put_nowait,
                                                                             json.loads(m.payload))
        self.client.on_subscribe = lambda *_a: loop.call_soon_threadsafe(subscribed.set)
        self.client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)
        self.subscribed = subscribed
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    async def __aenter__(self) -> Subscriber:
        await asyncio.wait_for(self.subscribed.wait(), 5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    body = encode_body({"b": 1, "a": "消防"})
    assert body == '{"a":"消防","b":1}'.encode()
    assert sign("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify("k", body, sign("k", body))
    assert not verify("k", body + b" ", sign("k", body))
    assert not verify("other", body, sign("k", body))
    assert safe_target("https://user:pw@agency.example:8443/hook?token=abc") == "https://agency.example:8443/hook"


async def test_webhook_is_retried_with_the_same_key_until_delivered(
        broker: Broker, db_url: str, receiver: WebhookReceiver) -> None:
    receiver.fail_first = 2
    cfg = base_config(db_url, broker, webhook_url=receiver.url)
    async with running_app(cfg) as app:
        service = app.app[INCIDENTS]
        await service.intake.ingest([AlarmIn("w1", "school-1", "smoke", "mqtt", utcnow())])
        inc = service.core.open_by_unit["school-1"].incident_id
        await service.commands.dispatch(inc, ["fire"], OFFICER)
        await receiver.wait_for(3)
        assert len(receiver.unique_keys()) == 1
        assert all(receiver.signature_ok)
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            detail = await officer.get(f"/api/incidents/{inc}")
            if detail["dispatches"][0]["status"] != "delivered":
                await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                       and e["dispatch"]["status"] == "delivered")
        detail = await officer.get(f"/api/incidents/{inc}")
        failures = [e for e in detail["timeline"] if e["action"] == "dispatch.attempt_failed"
                    and e["data"]["channel"] == "webhook"]
        assert [f["data"]["error"] for f in failures] == [f"HTTP 503 from {receiver.url}"] * 2
        first = receiver.received[0]
        assert first.headers[IDEMPOTENCY_HEADER] == first.json["idempotency_key"]
        assert first.json["dispatch_id"] == detail["dispatches"][0]["id"]
        await officer.close()


async def test_mqtt_channel_delivers_and_agency_acknowledges_over_mqtt(broker: Broker, db_url: str) -> None:
    cfg = base_config(db_url, broker)
    prefix = cfg.mqtt.topic_prefix
    async with running_app(cfg) as app, Subscriber(broker, f"{prefix}/dispatch/fire") as brigade:
        service = app.app[INCIDENTS]
        await service.intake.ingest([AlarmIn("m1", "school-1", "one_key", "mqtt", utcnow())])
        inc = service.core.open_by_unit["school-1"].incident_id
        await service.commands.dispatch(inc, ["fire"], OFFICER)
        message = await asyncio.wait_for(brigade.queue.get(), 10)
        assert message["incident_id"] == inc and message["unit"]["contact_name"] == "韦保安"
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            await publish(broker, f"{prefix}/dispatch/fire/ack",
                          {"dispatch_id": message["dispatch_id"], "status": "on_scene", "by": "一中队"})
            await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                   and e["dispatch"]["status"] == "on_scene")
            # The medical centre cannot answer for the brigade's dispatch.
            await publish(broker, f"{prefix}/dispatch/medical/ack", {"dispatch_id": message["dispatch_id"]})
        admin = Api(app.url)
        await admin.login("admin", "admin-pw")
        detail = await officer.get(f"/api/incidents/{inc}")
        assert detail["status"] == "on_scene"
        assert detail["dispatches"][0]["acknowledged_by"] == "一中队"
        assert [(c["channel"], c["status"]) for c in detail["dispatches"][0]["channels"]] == [("mqtt", "delivered")]
        rejections = await admin.get("/api/admin/rejections")
        assert any("another agency" in r["reason"] for r in rejections["items"])
        await officer.close()
        await admin.close()


async def test_escalation_reaches_the_leader_channel(broker: Broker, db_url: str) -> None:
    cfg = base_config(db_url, broker, escalation={"ack_timeout_s": 0.3})
    async with running_app(cfg) as app, Subscriber(broker, f"{cfg.mqtt.topic_prefix}/leader/escalation") as leader:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            await publish(broker, f"{cfg.mqtt.topic_prefix}/units/hotel-1/alarm",
                          {"alarm_id": "esc-1", "kind": "smoke"})
            escalated = await ws.next_matching(lambda e: e["type"] == "incident.escalated")
            assert escalated["level"] == 1
            note = await asyncio.wait_for(leader.queue.get(), 10)
            assert note["incident"]["unit"]["name"] == "环江宾馆" and note["level"] == 1
            await officer.post(f"/api/incidents/{escalated['incident']['id']}/ack")
        await officer.close()


def channel(dispatch: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in dispatch["channels"] if c["channel"] == name)


async def test_broker_accepting_is_sent_not_delivered_until_the_webhook_answers(
        broker: Broker, db_url: str, receiver: WebhookReceiver) -> None:
    """Webhook down, nobody listening on the agency's MQTT topic: the dispatch is sent, never delivered."""
    receiver.fail_first = 10**9  # the brigade's server answers 503 until it comes back
    cfg = base_config(db_url, broker, webhook_url=receiver.url)
    async with running_app(cfg) as app:
        service = app.app[INCIDENTS]
        await service.intake.ingest([AlarmIn("d1", "school-1", "smoke", "mqtt", utcnow())])
        inc = service.core.open_by_unit["school-1"].incident_id
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            await officer.post(f"/api/incidents/{inc}/dispatch", {"agencies": ["fire"]})
            await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                   and channel(e["dispatch"], "mqtt")["status"] == "sent")
            failing = await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                             and channel(e["dispatch"], "webhook")["attempts"] >= 3)
            assert failing["dispatch"]["status"] == "sent"
            detail = await officer.get(f"/api/incidents/{inc}")
            d = detail["dispatches"][0]
            assert d["status"] == "sent" and d["sent_at"] and d["delivered_at"] is None
            hook, mq = channel(d, "webhook"), channel(d, "mqtt")
            assert hook["status"] == "pending" and hook["attempts"] >= 3 and "HTTP 503" in hook["last_error"]
            assert mq["status"] == "sent" and mq["at"] and mq["attempts"] == 1
            actions = [e["action"] for e in detail["timeline"]]
            assert "dispatch.sent" in actions and "dispatch.delivered" not in actions

            receiver.fail_first = 0  # back up: the next retry gets a 2xx
            done = await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                          and channel(e["dispatch"], "webhook")["status"] == "delivered")
            assert done["dispatch"]["status"] == "delivered" and done["dispatch"]["delivered_at"]
            assert channel(done["dispatch"], "mqtt")["status"] == "sent"  # still nothing heard over MQTT
        detail = await officer.get(f"/api/incidents/{inc}")
        delivered = [e["data"] for e in detail["timeline"] if e["action"] == "dispatch.delivered"]
        assert [x["channel"] for x in delivered] == ["webhook"]
        listing = await officer.get("/api/dispatches")
        assert channel(listing[0], "webhook")["status"] == "delivered"
        await officer.close()


async def test_agency_ack_over_mqtt_confirms_the_mqtt_channel(broker: Broker, db_url: str) -> None:
    """MQTT only and no listener: sent (broker PUBACK) until the agency acknowledges on its ack topic."""
    cfg = base_config(db_url, broker)
    prefix = cfg.mqtt.topic_prefix
    async with running_app(cfg) as app:
        service = app.app[INCIDENTS]
        await service.intake.ingest([AlarmIn("d2", "hotel-1", "one_key", "mqtt", utcnow())])
        inc = service.core.open_by_unit["hotel-1"].incident_id
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        async with ws_client(officer) as ws:
            result = await officer.post(f"/api/incidents/{inc}/dispatch", {"agencies": ["medical"]})
            dispatch_id = result["dispatches"][0]["id"]
            assert [c["status"] for c in result["dispatches"][0]["channels"]] == ["pending"]
            sent = await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                          and e["dispatch"]["channels"][0]["status"] == "sent")
            assert sent["dispatch"]["status"] == "sent" and sent["dispatch"]["delivered_at"] is None
            await publish(broker, f"{prefix}/dispatch/medical/ack", {"dispatch_id": dispatch_id, "by": "120调度"})
            acked = await ws.next_matching(lambda e: e["type"] == "dispatch.updated"
                                           and e["dispatch"]["status"] == "acknowledged")
            mq = channel(acked["dispatch"], "mqtt")
            assert mq["status"] == "delivered" and mq["at"]
            assert acked["dispatch"]["delivered_at"] and acked["dispatch"]["acknowledged_by"] == "120调度"
        detail = await officer.get(f"/api/incidents/{inc}")
        delivered = [e["data"] for e in detail["timeline"] if e["action"] == "dispatch.delivered"]
        assert delivered == [{"agency": "medical", "dispatch_id": dispatch_id, "channel": "mqtt", "via": "ack"}]
        await officer.close()
    # the outbox row is finished: nothing is published again after a restart
    async with running_app(cfg) as app:
        from sqlalchemy import select

        from console.appkeys import DB
        from dispatch.models import OutboxMessage

        async with app.app[DB].session() as s:
            rows = (await s.scalars(select(OutboxMessage).where(OutboxMessage.dispatch_id == dispatch_id))).all()
        assert [(r.channel, r.status, r.attempts) for r in rows] == [("mqtt", "delivered", 1)]


async def test_migration_gives_existing_dispatches_their_channels(db_url: str) -> None:
    """Dispatches from before per-channel state: an MQTT row the broker took becomes 'sent', not 'delivered'."""
    from alembic import command
    from sqlalchemy import text

    from dispatch.db import Database, alembic_config

    def upgrade(conn: Any, revision: str) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    db = Database(db_url)
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(upgrade, "0003")
            at = datetime(2026, 11, 20, 2, tzinfo=UTC)
            await conn.execute(text("INSERT INTO units (id, name, category, address, contact_name, contact_phone) "
                                    "VALUES ('u1', 'U', '学校', '', '', '')"))
            await conn.execute(text(
                "INSERT INTO incidents (id, unit_id, kind, status, opened_at, last_alarm_at, alarm_count, "
                "close_note, escalation_level) VALUES (1, 'u1', 'smoke', 'dispatched', :at, :at, 1, '', 0)"),
                {"at": at})
            await conn.execute(text(
                "INSERT INTO dispatches (id, incident_id, agency, status, idempotency_key, created_at, created_by, "
                "sent_at, delivered_at) VALUES (1, 1, 'fire', 'delivered', 'fl-1', :at, 'officer', :at, :at)"),
                {"at": at})
            for oid, channel, ref, status, attempts, error, delivered in (
                    (1, "webhook", "agencies.fire.webhooks.0", "pending", 4, "HTTP 503 from x", None),
                    (2, "mqtt", "", "delivered", 1, "", at)):
                await conn.execute(text(
                    "INSERT INTO outbox (id, dispatch_id, channel, target, secret_ref, payload, idempotency_key, "
                    "status, attempts, next_attempt_at, last_error, created_at, delivered_at) VALUES (:id, 1, :ch, "
                    "'t', :ref, '{}', 'fl-1', :st, :n, :at, :err, :at, :dl)"),
                    {"id": oid, "ch": channel, "ref": ref, "st": status, "n": attempts, "err": error, "at": at,
                     "dl": delivered})
        await db.upgrade()
        async with db.engine.connect() as conn:
            outbox = (await conn.execute(text("SELECT channel, status, channel_key FROM outbox ORDER BY id"))).all()
        # 0007: each row's key on its dispatch is stored on the row (the worker reports by it, nothing parses refs)
        assert [tuple(r) for r in outbox] == [("webhook", "pending", "webhook-0"), ("mqtt", "sent", "mqtt")]
        from dispatch.models import Dispatch

        async with db.session() as s:
            d = await s.get(Dispatch, 1)
            assert d is not None
            assert [(c["key"], c["status"], c["attempts"], c["last_error"]) for c in d.channels] == [
                ("webhook-0", "pending", 4, "HTTP 503 from x"), ("mqtt", "sent", 1, "")]
            assert d.channels[1]["at"].startswith("2026-11-20T02:00:00")
            assert d.status == "delivered"  # history stays as recorded
    finally:
        await db.dispose()
