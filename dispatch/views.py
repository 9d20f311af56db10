"""JSON views of rows: what the API returns and the WebSocket pushes (one shape for both)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dispatch.models import Alarm, Device, Dispatch, Incident, Message, RecordEntry, RejectedMessage, Unit

CHANNEL_FIELDS = ("key", "channel", "status", "at", "attempts", "last_error")


def iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def unit_view(u: Unit) -> dict[str, Any]:
    return {
        "id": u.id, "name": u.name, "category": u.category, "address": u.address, "lat": u.lat,
        "lon": u.lon, "contact_name": u.contact_name, "contact_phone": u.contact_phone,
    }


def dispatch_view(d: Dispatch) -> dict[str, Any]:
    return {
        "id": d.id, "incident_id": d.incident_id, "agency": d.agency, "status": d.status,
        "created_at": iso(d.created_at), "created_by": d.created_by, "sent_at": iso(d.sent_at),
        "delivered_at": iso(d.delivered_at), "acknowledged_at": iso(d.acknowledged_at),
        "acknowledged_by": d.acknowledged_by, "on_scene_at": iso(d.on_scene_at),
        "channels": [{k: c.get(k) for k in CHANNEL_FIELDS} for c in d.channels or []],
    }


def incident_view(i: Incident, unit: Unit, dispatches: list[Dispatch]) -> dict[str, Any]:
    return {
        "id": i.id, "unit_id": i.unit_id, "unit": unit_view(unit), "kind": i.kind, "status": i.status,
        "opened_at": iso(i.opened_at), "last_alarm_at": iso(i.last_alarm_at), "alarm_count": i.alarm_count,
        "acknowledged_at": iso(i.acknowledged_at), "acknowledged_by": i.acknowledged_by,
        "dispatched_at": iso(i.dispatched_at), "on_scene_at": iso(i.on_scene_at),
        "closed_at": iso(i.closed_at), "closed_by": i.closed_by, "outcome": i.outcome,
        "close_note": i.close_note, "escalation_level": i.escalation_level,
        "escalated_at": iso(i.escalated_at),
        "dispatches": [dispatch_view(d) for d in sorted(dispatches, key=lambda d: d.id)],
    }


def alarm_view(a: Alarm) -> dict[str, Any]:
    return {
        "alarm_id": a.alarm_id, "unit_id": a.unit_id, "incident_id": a.incident_id, "kind": a.kind,
        "device_id": a.device_id, "device_ts": iso(a.device_ts), "received_at": iso(a.received_at),
        "note": a.note, "source": a.source,
    }


def alarm_row_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """alarm_view of the values an alarm row is inserted with (the intake's hot path builds no ORM object)."""
    return {
        "alarm_id": row["alarm_id"], "unit_id": row["unit_id"], "incident_id": row["incident_id"],
        "kind": row["kind"], "device_id": row["device_id"], "device_ts": iso(row["device_ts"]),
        "received_at": iso(row["received_at"]), "note": row["note"], "source": row["source"],
    }


def record_view(r: RecordEntry) -> dict[str, Any]:
    return {"id": r.id, "action": r.action, "actor": r.actor, "at": iso(r.at), "data": r.data,
            "hash": r.hash}


def message_view(m: Message) -> dict[str, Any]:
    return {"id": m.id, "incident_id": m.incident_id, "sender": m.sender, "sender_role": m.sender_role,
            "text": m.text, "at": iso(m.at)}


def device_view(d: Device) -> dict[str, Any]:
    return {"id": d.id, "unit_id": d.unit_id, "kind": d.kind, "status": d.status, "detail": d.detail,
            "last_seen": iso(d.last_seen), "status_since": iso(d.status_since),
            "heartbeat_interval_s": d.heartbeat_interval_s}


def rejection_view(r: RejectedMessage) -> dict[str, Any]:
    return {"id": r.id, "received_at": iso(r.received_at), "source": r.source, "topic": r.topic,
            "reason": r.reason, "excerpt": r.excerpt, "size": r.size}
