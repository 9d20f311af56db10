"""The one publish/subscribe interface inside the core.

MQTT ingest publishes into it, the dispatch core publishes state changes
out of it, and the WebSocket console, the notify worker, the escalation
timer and the camera layer subscribe to it. Event names are the same
strings everywhere: on the bus, on the WebSocket (`type`) and in docs.

Publishing never blocks: each subscriber owns a bounded queue, and a
subscriber that falls behind loses its oldest events (counted in
`dropped`) instead of slowing the core or the other subscribers.

Each event type has a typed payload (a frozen dataclass below, found by
`Event.payload()`): its fields are the event's `data` exactly, checked
when it is built, so what travels on the WebSocket stays as it was while
readers (the console's visibility rules) use fields, not dict keys.
Publishers build `Event.of(payload)`; those still building
`Event(type, data)` are checked when the payload is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Self, TypeVar

log = logging.getLogger(__name__)

# Event names. Keep this list the single source; docs/events.md mirrors it.
ALARM_RECEIVED = "alarm.received"
ALARM_REJECTED = "alarm.rejected"
INCIDENT_CREATED = "incident.created"
INCIDENT_UPDATED = "incident.updated"
INCIDENT_ESCALATED = "incident.escalated"
INCIDENT_MESSAGE = "incident.message"
DISPATCH_UPDATED = "dispatch.updated"
OUTBOX_PENDING = "outbox.pending"
DEVICE_UPDATED = "device.updated"
HAZARD_UPDATED = "hazard.updated"
EXIT_ZONE_CHANGED = "exit_zone.changed"
EXIT_ZONE_APPLIED = "exit_zone.applied"
DETECTOR_MASK_CHANGED = "detector_mask.changed"
DETECTOR_MASK_APPLIED = "detector_mask.applied"
HEALTH_UPDATED = "health.updated"  # data: {"data": <the /healthz body>} (docs: /healthz, contracts)
COMPLAINT_RECEIVED = "complaint.received"  # a new report in a station's triage queue
COMPLAINT_UPDATED = "complaint.updated"  # a report accepted or rejected
CALL_UPDATED = "call.updated"  # a live call rang, connected, changed participants or ended (dispatch.calls)
CALL_CONTROL = "call.control"  # the command room asks the unit's phone to do something (switch camera)

ALL_EVENTS = frozenset(
    {
        ALARM_RECEIVED,
        ALARM_REJECTED,
        INCIDENT_CREATED,
        INCIDENT_UPDATED,
        INCIDENT_ESCALATED,
        INCIDENT_MESSAGE,
        DISPATCH_UPDATED,
        OUTBOX_PENDING,
        DEVICE_UPDATED,
        HAZARD_UPDATED,
        EXIT_ZONE_CHANGED,
        EXIT_ZONE_APPLIED,
        DETECTOR_MASK_CHANGED,
        DETECTOR_MASK_APPLIED,
        HEALTH_UPDATED,
        COMPLAINT_RECEIVED,
        COMPLAINT_UPDATED,
        CALL_UPDATED,
        CALL_CONTROL,
    }
)


JsonObject = dict[str, Any]


def _expect(payload: Payload, **types: type) -> None:
    """Each named field holds a value of its type (bool is not an int), else ValueError naming the event."""
    for name, kind in types.items():
        value = getattr(payload, name)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"{payload.TYPE}: {name} must be {kind.__name__}, not {type(value).__name__}")


def _text_in(payload: Payload, what: str, view: JsonObject, key: str) -> str:
    value = view.get(key)
    if not isinstance(value, str):
        raise ValueError(f"{payload.TYPE}: {what}.{key} must be str, not {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Payload:
    """What one event type carries. Its fields are the event's `data`, key for key (`to_json`); nested views
    (an incident, a dispatch, ...) stay the JSON objects dispatch.views makes, checked for the keys read here."""

    TYPE: ClassVar[str]

    @classmethod
    def from_json(cls, data: JsonObject) -> Self:
        """The payload of an event's `data`; ValueError when a key is missing or unknown, or a value's type wrong."""
        names = [f.name for f in fields(cls)]
        if set(data) != set(names):
            raise ValueError(f"{cls.TYPE}: data has keys {sorted(data)}, expected {sorted(names)}")
        return cls(**data)

    def to_json(self) -> JsonObject:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def about_unit(self) -> str | None:
        """The unit this event is about, if any."""
        return None

    def part_for(self, agency: str) -> Payload | None:
        """The part of this event that concerns `agency`'s dispatches (None: none does)."""
        return None

    def about_station(self) -> str | None:
        """The station whose work this event is, when only those who see that station may be told (dispatch.scope);
        None: not tied to one station."""
        return None


@dataclass(frozen=True, slots=True)
class AlarmReceived(Payload):
    TYPE = ALARM_RECEIVED
    alarm: JsonObject
    unit_id: str

    def __post_init__(self) -> None:
        _expect(self, alarm=dict, unit_id=str)

    def about_unit(self) -> str:
        return self.unit_id


@dataclass(frozen=True, slots=True)
class AlarmRejected(Payload):
    TYPE = ALARM_REJECTED
    rejection: JsonObject

    def __post_init__(self) -> None:
        _expect(self, rejection=dict)


@dataclass(frozen=True, slots=True)
class _IncidentView(Payload):
    """An event carrying an incident view: its unit, and its dispatches (each naming its agency)."""

    incident: JsonObject

    def __post_init__(self) -> None:
        _expect(self, incident=dict)
        _text_in(self, "incident", self.incident, "unit_id")
        dispatches = self.incident.get("dispatches", [])
        if not isinstance(dispatches, list) or not all(isinstance(d, dict) for d in dispatches):
            raise ValueError(f"{self.TYPE}: incident.dispatches must be a list of objects")
        for d in dispatches:
            _text_in(self, "incident.dispatches[]", d, "agency")

    def about_unit(self) -> str:
        return _text_in(self, "incident", self.incident, "unit_id")

    def _dispatches_of(self, agency: str) -> list[JsonObject]:
        return [d for d in self.incident.get("dispatches", []) if d["agency"] == agency]


@dataclass(frozen=True, slots=True)
class _IncidentChanged(_IncidentView):
    def part_for(self, agency: str) -> Self | None:
        """The incident with only `agency`'s dispatches; None when none is theirs."""
        mine = self._dispatches_of(agency)
        return replace(self, incident={**self.incident, "dispatches": mine}) if mine else None


@dataclass(frozen=True, slots=True)
class IncidentCreated(_IncidentChanged):
    TYPE = INCIDENT_CREATED


@dataclass(frozen=True, slots=True)
class IncidentUpdated(_IncidentChanged):
    TYPE = INCIDENT_UPDATED


@dataclass(frozen=True, slots=True)
class IncidentEscalated(_IncidentView):
    TYPE = INCIDENT_ESCALATED
    level: int

    def __post_init__(self) -> None:
        _IncidentView.__post_init__(self)
        _expect(self, level=int)


@dataclass(frozen=True, slots=True)
class IncidentMessage(Payload):
    TYPE = INCIDENT_MESSAGE
    message: JsonObject
    unit_id: str

    def __post_init__(self) -> None:
        _expect(self, message=dict, unit_id=str)

    def about_unit(self) -> str:
        return self.unit_id


@dataclass(frozen=True, slots=True)
class DispatchUpdated(Payload):
    TYPE = DISPATCH_UPDATED
    dispatch: JsonObject
    incident_id: int
    unit_id: str

    def __post_init__(self) -> None:
        _expect(self, dispatch=dict, incident_id=int, unit_id=str)
        _text_in(self, "dispatch", self.dispatch, "agency")

    def about_unit(self) -> str:
        return self.unit_id

    def part_for(self, agency: str) -> Self | None:
        return self if self.dispatch["agency"] == agency else None


@dataclass(frozen=True, slots=True)
class OutboxPending(Payload):
    TYPE = OUTBOX_PENDING


@dataclass(frozen=True, slots=True)
class DeviceUpdated(Payload):
    """A unit's device (panel, gateway) changed status."""

    TYPE = DEVICE_UPDATED
    device: JsonObject
    unit_id: str

    def __post_init__(self) -> None:
        _expect(self, device=dict, unit_id=str)

    def about_unit(self) -> str:
        return self.unit_id


@dataclass(frozen=True, slots=True)
class CameraUpdated(Payload):
    """A camera changed status (same event name as devices, told apart by `kind`)."""

    TYPE = DEVICE_UPDATED
    camera: JsonObject  # as in GET /api/cameras
    kind: Literal["camera"] = "camera"

    def __post_init__(self) -> None:
        _expect(self, camera=dict)
        if self.kind != "camera":
            raise ValueError(f"{self.TYPE}: kind must be 'camera'")
        _text_in(self, "camera", self.camera, "unit_id")

    def to_json(self) -> JsonObject:
        return {"kind": self.kind, "camera": self.camera}

    def about_unit(self) -> str:
        return _text_in(self, "camera", self.camera, "unit_id")


def _device_or_camera(data: JsonObject) -> DeviceUpdated | CameraUpdated:
    return CameraUpdated.from_json(data) if data.get("kind") == "camera" else DeviceUpdated.from_json(data)


@dataclass(frozen=True, slots=True)
class HazardUpdated(Payload):
    TYPE = HAZARD_UPDATED
    hazard: JsonObject
    unit_id: str

    def __post_init__(self) -> None:
        _expect(self, hazard=dict, unit_id=str)

    def about_unit(self) -> str:
        return self.unit_id


@dataclass(frozen=True, slots=True)
class _CameraOutline(Payload):
    """An exit zone or detection mask of a camera changed or was applied to the detectors: `body` is the data
    (`camera_id`, the outline's id and what changed, or what the detectors took), whose shape the outline
    stores own (dispatch.regions)."""

    body: JsonObject

    @classmethod
    def from_json(cls, data: JsonObject) -> Self:
        return cls(body=data)

    def __post_init__(self) -> None:
        _expect(self, body=dict)
        _text_in(self, "data", self.body, "camera_id")

    def to_json(self) -> JsonObject:
        return dict(self.body)


@dataclass(frozen=True, slots=True)
class ExitZoneChanged(_CameraOutline):
    TYPE = EXIT_ZONE_CHANGED


@dataclass(frozen=True, slots=True)
class ExitZoneApplied(_CameraOutline):
    TYPE = EXIT_ZONE_APPLIED


@dataclass(frozen=True, slots=True)
class DetectorMaskChanged(_CameraOutline):
    TYPE = DETECTOR_MASK_CHANGED


@dataclass(frozen=True, slots=True)
class DetectorMaskApplied(_CameraOutline):
    TYPE = DETECTOR_MASK_APPLIED


@dataclass(frozen=True, slots=True)
class HealthUpdated(Payload):
    TYPE = HEALTH_UPDATED
    data: JsonObject  # the /healthz body

    def __post_init__(self) -> None:
        _expect(self, data=dict)


@dataclass(frozen=True, slots=True)
class _ComplaintView(Payload):
    """A report in a station's triage queue (the officers' view, dispatch.complaint_views): only those who see
    that station are told."""

    complaint: JsonObject
    station_id: str

    def __post_init__(self) -> None:
        _expect(self, complaint=dict, station_id=str)

    def about_station(self) -> str:
        return self.station_id


@dataclass(frozen=True, slots=True)
class ComplaintReceived(_ComplaintView):
    TYPE = COMPLAINT_RECEIVED


@dataclass(frozen=True, slots=True)
class ComplaintUpdated(_ComplaintView):
    TYPE = COMPLAINT_UPDATED


@dataclass(frozen=True, slots=True)
class CallUpdated(Payload):
    """A call's state (dispatch.calls view): told to the station's staff, the unit, and the agencies whose
    accepted dispatch lets them join (`agencies`)."""

    TYPE = CALL_UPDATED
    call: JsonObject
    unit_id: str
    agencies: list[str]

    def __post_init__(self) -> None:
        _expect(self, call=dict, unit_id=str, agencies=list)
        if not all(isinstance(a, str) for a in self.agencies):
            raise ValueError(f"{self.TYPE}: agencies must be a list of str")

    def about_unit(self) -> str:
        return self.unit_id

    def part_for(self, agency: str) -> Self | None:
        return self if agency in self.agencies else None


@dataclass(frozen=True, slots=True)
class CallControl(Payload):
    """A request from the command room to the unit's phone in a call (`action`: switch_camera)."""

    TYPE = CALL_CONTROL
    incident_id: int
    call_id: str
    unit_id: str
    action: str

    def __post_init__(self) -> None:
        _expect(self, incident_id=int, call_id=str, unit_id=str, action=str)

    def about_unit(self) -> str:
        return self.unit_id


# The payload of each event type's `data` (device.updated carries a device or a camera).
PAYLOADS: dict[str, Callable[[JsonObject], Payload]] = {
    ALARM_RECEIVED: AlarmReceived.from_json,
    ALARM_REJECTED: AlarmRejected.from_json,
    INCIDENT_CREATED: IncidentCreated.from_json,
    INCIDENT_UPDATED: IncidentUpdated.from_json,
    INCIDENT_ESCALATED: IncidentEscalated.from_json,
    INCIDENT_MESSAGE: IncidentMessage.from_json,
    DISPATCH_UPDATED: DispatchUpdated.from_json,
    OUTBOX_PENDING: OutboxPending.from_json,
    DEVICE_UPDATED: _device_or_camera,
    HAZARD_UPDATED: HazardUpdated.from_json,
    EXIT_ZONE_CHANGED: ExitZoneChanged.from_json,
    EXIT_ZONE_APPLIED: ExitZoneApplied.from_json,
    DETECTOR_MASK_CHANGED: DetectorMaskChanged.from_json,
    DETECTOR_MASK_APPLIED: DetectorMaskApplied.from_json,
    HEALTH_UPDATED: HealthUpdated.from_json,
    COMPLAINT_RECEIVED: ComplaintReceived.from_json,
    COMPLAINT_UPDATED: ComplaintUpdated.from_json,
    CALL_UPDATED: CallUpdated.from_json,
    CALL_CONTROL: CallControl.from_json,
}
if set(PAYLOADS) != ALL_EVENTS:
    raise RuntimeError(f"event types without a payload: {sorted(ALL_EVENTS ^ set(PAYLOADS))}")


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened. `data` is JSON-ready (what the WebSocket sends); `payload()` types it.

    An event goes to every subscriber as the same object, and its data is not changed once published: what
    subscribers derive from it (its typed payload, its WebSocket text per audience) is made once, by `derived`.
    `remote`: committed by another core of the cluster and relayed here (dispatch.fanout); consoles show it,
    parts whose reaction is a side effect (a record entry, a learned frame) leave it to the core that committed it.
    """

    type: str
    data: dict[str, Any] = field(default_factory=dict)
    remote: bool = False
    _derived: dict[str, Any] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, payload: Payload) -> Event:
        event = cls(payload.TYPE, payload.to_json())
        event._derived["payload"] = payload
        return event

    def derived(self, key: str, make: Callable[[], T]) -> T:
        """`make()`, called once per event and key; later calls (other subscribers) get the same value."""
        try:
            value: T = self._derived[key]
        except KeyError:
            value = self._derived[key] = make()
        return value

    def payload(self) -> Payload:
        """The typed payload of `data`; ValueError when `data` is not what this event type carries."""
        return self.derived("payload", self._parse)

    def _parse(self) -> Payload:
        parse = PAYLOADS.get(self.type)
        if parse is None:
            raise ValueError(f"unknown event type {self.type!r}")
        try:
            return parse(self.data)
        except TypeError as exc:  # a value the dataclass cannot take
            raise ValueError(f"{self.type}: {exc}") from None

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, **self.data}


class Subscription:
    """A bounded, drop-oldest queue of events for one consumer."""

    def __init__(self, bus: EventBus, types: frozenset[str] | None, maxsize: int) -> None:
        self._bus = bus
        self.types = types
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        self.dropped = 0

    def offer(self, event: Event) -> None:
        if self.types is not None and event.type not in self.types:
            return
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except asyncio.QueueFull:
                self._queue.get_nowait()
                self.dropped += 1

    async def get(self) -> Event:
        return await self._queue.get()

    def get_nowait(self) -> Event | None:
        try:
            return self._queue.get_nowait()
        except asyncio.QueueEmpty:
            return None

    def close(self) -> None:
        self._bus.unsubscribe(self)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            yield await self._queue.get()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """In-process fan-out. Must be used from the event loop's thread."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []

    def subscribe(self, types: Iterable[str] | None = None, maxsize: int = 10_000) -> Subscription:
        wanted = frozenset(types) if types is not None else None
        if wanted is not None:
            unknown = wanted - ALL_EVENTS
            if unknown:
                raise ValueError(f"unknown event types: {sorted(unknown)}")
        sub = Subscription(self, wanted, maxsize)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        if event.type not in ALL_EVENTS:
            raise ValueError(f"unknown event type {event.type!r}")
        for sub in list(self._subs):
            sub.offer(event)
