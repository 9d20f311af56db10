"""The 96119 hotline gateway (docs/complaints.md): over HTTP signed with HMAC-SHA256 (missing or wrong signature:
401; no secret configured: 403), idempotent on the hotline's ticket; over MQTT (QoS 1, stored before the PUBACK),
where hostile payloads are stored rejections and never crash the intake. Both land in the same table."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from console.appkeys import BUS, DB, MQTT
from dispatch import events as ev
from dispatch.complaint_models import Complaint
from dispatch.events import Subscription
from dispatch.models import RejectedMessage
from ingest.contract import ComplaintIn, Rejection, utcnow
from ingest.payloads import parse_message
from tests.complaints.conftest import HOTLINE_SECRET, config, login, signed
from tests.fuzz import HOSTILE, publish_many
from tests.support import Api, Broker, RunningApp, base_config, publish, running_app

TICKET = {"ticket": "96119-20261201-0042", "description": "来电反映：城东农贸市场消防通道被摊位占用",
          "unit_id": "east-market", "caller_phone": "13700000000", "address": "东兴街3号",
          "reported_at": "2026-12-01T08:30:00+08:00"}


async def complaints(app: RunningApp) -> list[Complaint]:
    async with app.app[DB].session() as s:
        return list((await s.scalars(select(Complaint).order_by(Complaint.id))).all())


async def post(app: RunningApp, raw: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, \
            http.post(app.url + "/api/hotline/complaints", data=raw, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_signed_hotline_complaints_are_taken_once_per_ticket(app: RunningApp, users: dict[str, Api],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    raw, headers = signed(TICKET)
    json_only = {"Content-Type": "application/json"}
    status, body = await post(app, raw, json_only)
    assert status == 401 and "X-Firelink-Signature" in body["error"], body
    other_secret = signed(TICKET, "another-secret")[1]["X-Firelink-Signature"]
    other_body = signed({**TICKET, "unit_id": "school-1"})[1]["X-Firelink-Signature"]
    for wrong in ("sha256=" + "0" * 64, "sha256=", "garbage", other_secret, other_body, "sha256=é"):
        status, body = await post(app, raw, {**json_only, "X-Firelink-Signature": wrong})
        assert status == 401, (wrong, body)
    assert await complaints(app) == []

    status, first = await post(app, raw, headers)
    assert status == 201 and first["duplicate"] is False, first
    status, again = await post(app, raw, headers)  # the gateway retries (a lost answer): the same complaint
    assert (status, again) == (200, {"receipt": first["receipt"], "duplicate": True})
    edited, edited_headers = signed({**TICKET, "description": "同一工单再次推送，内容略有改动"})
    status, edited_answer = await post(app, edited, edited_headers)
    assert (status, edited_answer["receipt"]) == (200, first["receipt"])
    rows = await complaints(app)
    assert len(rows) == 1
    row = rows[0]
    assert (row.source, row.reporter, row.ticket, row.station_id, row.routed_by, row.contact_phone) == \
        ("hotline", "96119", TICKET["ticket"], "st-east", "unit", "13700000000")
    assert row.description == TICKET["description"]

    east = await login(app, users, "east")
    (queued,) = await east.get("/api/complaints")
    assert (queued["source"], queued["ticket"], queued["receipt"]) == ("hotline", TICKET["ticket"], first["receipt"])

    bad, bad_headers = signed({**TICKET, "ticket": "other-1", "unit_id": "no-such-unit"})
    assert (await post(app, bad, bad_headers))[0] == 400
    bad, bad_headers = signed({**TICKET, "ticket": "other-2", "extra": 1})
    assert (await post(app, bad, bad_headers))[0] == 400
    bad, bad_headers = signed(b"{not json")
    assert (await post(app, bad, bad_headers))[0] == 400
    assert len(await complaints(app)) == 1
    assert HOTLINE_SECRET not in caplog.text  # the secret is never logged


async def test_without_a_secret_the_hotline_route_is_closed(sqlite_url: str) -> None:
    async with running_app(base_config(sqlite_url, None), mqtt=False) as app:
        raw, headers = signed(TICKET)
        status, body = await post(app, raw, headers)
        assert status == 403, body
        assert await complaints(app) == []
        async with aiohttp.ClientSession() as http, http.get(app.url + "/api/openapi.json") as resp:
            assert HOTLINE_SECRET not in await resp.text()


def test_hostile_payloads_on_the_hotline_topic_are_rejections_and_a_valid_one_a_complaint() -> None:
    now = utcnow()
    for name, payload in HOSTILE.items():
        out = parse_message("fl", "fl/hotline/complaints", payload, 65_536, now)
        assert isinstance(out, Rejection) and out.reason, name
    for over in ({"ticket": "../../x"}, {"ticket": ""}, {"description": ""}, {"lat": 91.0}, {"caller_phone": "<b>"},
                 {"reported_at": "yesterday"}, {"unit_id": "a/b"}, {"description": "x" * 4001}):
        out = parse_message("fl", "fl/hotline/complaints", json.dumps({**TICKET, **over}).encode(), 65_536, now)
        assert isinstance(out, Rejection), over
    ok = parse_message("fl", "fl/hotline/complaints", json.dumps(TICKET).encode(), 65_536, now)
    assert isinstance(ok, ComplaintIn) and (ok.source, ok.ticket, ok.unit_id) == ("hotline", TICKET["ticket"],
                                                                                  "east-market")
    assert isinstance(parse_message("fl", "fl/hotline/complaints/x", b"{}", 65_536, now), Rejection)


async def next_event(sub: Subscription, kind: str, timeout: float = 10) -> ev.Event:
    async def go() -> ev.Event:
        while True:
            event = await sub.get()
            if event.type == kind:
                return event
    return await asyncio.wait_for(go(), timeout)


async def test_hotline_over_mqtt_is_stored_once_and_hostile_payloads_are_stored_rejections(
        broker: Broker, db_url: str, users: dict[str, Api]) -> None:
    cfg = config(db_url, mqtt={"host": broker.host, "port": broker.port, "topic_prefix": f"flc-{uuid.uuid4().hex[:8]}",
                               "client_id": f"core-{uuid.uuid4().hex[:8]}", "embedded_broker": "never"})
    topic = f"{cfg.mqtt.topic_prefix}/hotline/complaints"
    async with running_app(cfg) as app:
        assert app.app[MQTT] is not None
        with app.app[BUS].subscribe([ev.COMPLAINT_RECEIVED, ev.ALARM_REJECTED]) as sub:
            hostile = [(topic, payload) for payload in HOSTILE.values()]
            await asyncio.to_thread(publish_many, broker, hostile)
            for _ in hostile:
                await next_event(sub, ev.ALARM_REJECTED)
            message = {**TICKET, "ticket": "96119-mqtt-1", "unit_id": "school-1"}
            await publish(broker, topic, message)
            received = await next_event(sub, ev.COMPLAINT_RECEIVED)
            assert received.data["station_id"] == "st-test"
            await publish(broker, topic, message)  # the gateway publishes the ticket again
            unknown = {**TICKET, "ticket": "96119-mqtt-2", "unit_id": "no-such-unit"}
            await publish(broker, topic, unknown)  # refused by the core: a stored rejection, not a crash
            rejection = await next_event(sub, ev.ALARM_REJECTED)
            assert "unknown unit" in rejection.data["rejection"]["reason"]
        rows = await complaints(app)
        assert [(c.ticket, c.source, c.reporter) for c in rows] == [("96119-mqtt-1", "hotline", "96119")]
        async with app.app[DB].session() as s:
            assert await s.scalar(select(func.count(RejectedMessage.id))) == len(HOSTILE) + 1
        link = app.app[MQTT]
        assert link is not None and link.status().ok
        counters = link.status().counters
        assert not any(counters.get(k) for k in ("failures", "quarantined", "on_message_errors"))
        officer = await login(app, users, "officer")
        assert [c["ticket"] for c in await officer.get("/api/complaints")] == ["96119-mqtt-1"]
