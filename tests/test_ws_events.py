"""WebSocket events are typed payloads: each event type's `data` reads as its payload and back key for key (the
JSON on the wire unchanged), and who sees which payload is decided by one table (console.ws.AUDIENCES)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from console.appkeys import BUS, HAZARDS, INCIDENTS
from console.json_text import encode
from console.ws import AUDIENCES, PUSHED, frame, visible
from dispatch import events as ev
from dispatch.actor import SYSTEM, Actor
from dispatch.events import Event, Payload
from ingest.contract import AlarmIn, Rejection, utcnow
from tests.support import base_config, running_app

CAST = {
    "admin": Actor("admin", "admin"),
    "officer": Actor("officer", "duty_officer"),
    "assessor": Actor("assessor", "assessor"),
    "u1": Actor("u1", "unit", unit_id="u1"),
    "u2": Actor("u2", "unit", unit_id="u2"),
    "fire": Actor("fire", "agency", agency="fire"),
    "medical": Actor("medical", "agency", agency="medical"),
}
STAFF = {"admin", "officer", "assessor"}
INCIDENT = {"id": 7, "unit_id": "u1", "status": "dispatched",
            "dispatches": [{"id": 1, "agency": "fire", "status": "sent"}]}
CAMERA = {"id": "c1", "unit_id": "u1", "status": "online"}


def test_every_event_type_has_a_payload_and_every_pushed_one_an_audience() -> None:
    assert set(ev.PAYLOADS) == ev.ALL_EVENTS
    assert set(PUSHED) == ev.ALL_EVENTS - {ev.OUTBOX_PENDING}  # the notify worker's, never a browser's
    assert all(kind.TYPE in ev.ALL_EVENTS for kind in AUDIENCES)


@pytest.mark.parametrize(("payload", "seen_by"), [
    (ev.AlarmReceived(alarm={"alarm_id": "a1"}, unit_id="u1"), STAFF | {"u1"}),
    (ev.AlarmRejected(rejection={"reason": "bad"}), {"admin"}),
    (ev.IncidentCreated(incident=INCIDENT), STAFF | {"u1", "fire"}),
    (ev.IncidentUpdated(incident=INCIDENT), STAFF | {"u1", "fire"}),
    (ev.IncidentEscalated(incident=INCIDENT, level=1), STAFF | {"u1"}),
    (ev.IncidentMessage(message={"text": "请切断电源"}, unit_id="u2"), STAFF | {"u2"}),
    (ev.DispatchUpdated(dispatch={"id": 2, "agency": "medical"}, incident_id=7, unit_id="u1"),
     STAFF | {"u1", "medical"}),
    (ev.DeviceUpdated(device={"id": "btn-1"}, unit_id="u1"), STAFF | {"u1"}),
    (ev.CameraUpdated(camera=CAMERA), STAFF),
    (ev.HazardUpdated(hazard={"id": 3}, unit_id="u2"), STAFF | {"u2"}),
    (ev.ExitZoneChanged(body={"camera_id": "c1", "zone_id": "z1", "change": "deleted", "zone": None}), STAFF),
    (ev.DetectorMaskApplied(body={"camera_id": "c1", "watched": True}), STAFF),
    (ev.HealthUpdated(data={"ok": True}), STAFF),
], ids=lambda p: type(p).__name__ if isinstance(p, Payload) else "")
def test_who_sees_each_typed_event(payload: Payload, seen_by: set[str]) -> None:
    event = Event.of(payload)
    shown = {name: visible(event, who) for name, who in CAST.items()}
    assert {name for name, out in shown.items() if out is not None} == seen_by
    whole = {"type": payload.TYPE, **event.data}
    for name in seen_by - {"fire", "medical"}:
        assert shown[name] == whole  # staff and the unit get the event exactly as published
    for name, who in CAST.items():  # the text each socket sends is that view, encoded
        text = frame(event, who)
        assert (None if text is None else json.loads(text)) == shown[name], name


def test_an_agency_sees_only_its_own_dispatches_of_an_incident() -> None:
    incident = {**INCIDENT, "dispatches": [{"id": 1, "agency": "fire"}, {"id": 2, "agency": "medical"}]}
    event = Event.of(ev.IncidentUpdated(incident=incident))
    assert visible(event, CAST["fire"]) == {"type": "incident.updated",
                                            "incident": {**incident, "dispatches": [{"id": 1, "agency": "fire"}]}}
    assert visible(event, CAST["medical"]) == {"type": "incident.updated",
                                               "incident": {**incident, "dispatches": [{"id": 2, "agency": "medical"}]}}
    assert event.data["incident"]["dispatches"] == incident["dispatches"]  # the event itself is left alone
    # Encoded once per audience: the officer's text is not an agency's, nor one agency's the other's.
    texts = {name: frame(event, CAST[name]) for name in ("fire", "officer", "medical")}
    assert {name: json.loads(t or "null") for name, t in texts.items()} == {
        name: visible(event, CAST[name]) for name in texts}
    assert frame(event, CAST["admin"]) is texts["officer"]  # the same text object, not encoded again


def test_what_orjson_cannot_encode_is_encoded_as_json_does() -> None:
    assert json.loads(encode({"type": "x", "n": 2 ** 70, "s": "火警"})) == {"type": "x", "n": 2 ** 70, "s": "火警"}
    assert encode({"type": "x", "s": "火警"}) == '{"type":"x","s":"火警"}'  # UTF-8 as is, not \u escapes


def test_camera_status_and_device_status_share_an_event_name_but_not_a_payload() -> None:
    assert isinstance(Event(ev.DEVICE_UPDATED, {"kind": "camera", "camera": CAMERA}).payload(), ev.CameraUpdated)
    assert isinstance(Event(ev.DEVICE_UPDATED, {"device": {}, "unit_id": "u1"}).payload(), ev.DeviceUpdated)
    assert Event.of(ev.CameraUpdated(camera=CAMERA)).data == {"kind": "camera", "camera": CAMERA}


@pytest.mark.parametrize("data", [
    {"incident": {"id": 1}},  # no unit: nobody could be told apart
    {"incident": {"unit_id": "u1", "dispatches": [{"id": 1}]}},  # a dispatch without its agency
    {"incident": INCIDENT, "extra": 1},  # a key the payload does not know: the wire would change
    {"incident": "7"},
    {},
])
def test_an_event_whose_data_is_not_its_payload_is_pushed_to_nobody(data: dict[str, Any],
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    event = Event(ev.INCIDENT_UPDATED, data)
    with pytest.raises(ValueError, match=r"incident\.updated"):
        event.payload()
    with caplog.at_level(logging.ERROR, logger="console.ws"):
        assert all(visible(event, who) is None for who in CAST.values())
    assert "incident.updated" in caplog.text


def test_a_payload_refuses_wrong_types_when_built() -> None:
    with pytest.raises(ValueError, match="unit_id must be str"):
        ev.AlarmReceived(alarm={}, unit_id=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="level must be int"):
        ev.IncidentEscalated(incident=INCIDENT, level=True)
    with pytest.raises(ValueError, match="kind must be 'camera'"):
        ev.CameraUpdated(camera=CAMERA, kind="device")  # type: ignore[arg-type]


async def test_what_the_core_publishes_reads_as_its_payload_and_back_unchanged(sqlite_url: str) -> None:
    """Every event a scenario publishes parses as its type's payload, and the payload gives back the same data:
    the WebSocket JSON is what the core published, key for key."""
    async with running_app(base_config(sqlite_url, None), mqtt=False) as app:
        service = app.app[INCIDENTS]
        with app.app[BUS].subscribe() as sub:
            await service.intake.ingest([AlarmIn("w1", "school-1", "one_key", "mqtt", utcnow()),
                                  Rejection("mqtt", "alarms/x", "bad payload", "{", 1, utcnow())])
            inc = service.core.open_by_unit["school-1"].incident_id
            await service.commands.acknowledge(inc, SYSTEM)
            await service.commands.dispatch(inc, ["fire", "medical"], SYSTEM)
            await service.commands.add_message(inc, "请切断电源", Actor("officer", "duty_officer"))
            detail = await service.views.incident_detail(inc, SYSTEM)
            await service.deliveries.agency_update(detail["dispatches"][0]["id"], "acknowledged", SYSTEM)
            await service.intake.set_device_status("btn-1", "fault", "battery low", utcnow(), None)
            await app.app[HAZARDS].create(unit_id="hotel-1", category="corridor_storage", source="patrol",
                                          actor=Actor("officer", "duty_officer"))
            wanted = {ev.ALARM_RECEIVED, ev.ALARM_REJECTED, ev.INCIDENT_CREATED, ev.INCIDENT_UPDATED,
                      ev.DISPATCH_UPDATED, ev.INCIDENT_MESSAGE, ev.DEVICE_UPDATED, ev.HAZARD_UPDATED,
                      ev.OUTBOX_PENDING}
            seen: list[Event] = []
            while not wanted <= {e.type for e in seen}:
                seen.append(await asyncio.wait_for(sub.get(), 10))
            while (more := sub.get_nowait()) is not None:
                seen.append(more)
    for event in seen:
        payload = event.payload()
        assert payload.TYPE == event.type
        assert payload.to_json() == event.data, event.type
        assert Event.of(payload) == event
