"""Complaints as each audience sees them, their record actions and receipt codes.

Three views of one row: the triage officers' (everything, the reporter's phone included), the assistant's own
report (what it filed and where it stands, no officer's name) and the public status behind a receipt (where it
stands and nothing else). Shared by the commands (dispatch/complaints.py) and the read side (complaint_views.py).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from dispatch.complaint_models import Complaint
from dispatch.hazard_models import Hazard
from dispatch.models import Unit
from dispatch.state import HazardStatus
from dispatch.views import iso

# Record actions (docs/complaints.md, docs/kpi.md): entries with no incident or hazard id, `data.complaint_id`.
COMPLAINT_RECEIVED = "complaint.received"
COMPLAINT_ACCEPTED = "complaint.accepted"
COMPLAINT_REJECTED = "complaint.rejected"
TRIAGE_ACTIONS = frozenset({COMPLAINT_ACCEPTED, COMPLAINT_REJECTED})

SOURCES = ("public", "assistant", "hotline")
RECEIVED, ACCEPTED, REJECTED = "received", "accepted", "rejected"  # Complaint.status
# What the reporter is told (GET /api/public/complaints/{receipt}): the triage outcome, then the hazard's progress.
PUBLIC_STATUSES = ("received", "accepted", "rejected", "rectifying", "rectified", "closed")

# Receipt codes: 10 characters of 30 that cannot be mistaken for one another when read aloud or typed from a
# screen (no 0/O, 1/I/L, U/V confusion): 30^10 ≈ 5.9·10^14 codes, drawn by `secrets`.
RECEIPT_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
RECEIPT_LENGTH = 10
_RECEIPT = re.compile(f"[{RECEIPT_ALPHABET}]{{{RECEIPT_LENGTH}}}")


def new_receipt() -> str:
    return "".join(secrets.choice(RECEIPT_ALPHABET) for _ in range(RECEIPT_LENGTH))


def normalise_receipt(text: str) -> str | None:
    """A receipt as typed ("k7qh3-m9trw", with spaces or a dash) → its canonical form; None when it cannot be one."""
    code = re.sub(r"[\s\-]", "", text).upper()
    return code if _RECEIPT.fullmatch(code) else None


def shown_receipt(code: str) -> str:
    """How a receipt is printed for people: two groups of five (K7QH3-M9TRW)."""
    return f"{code[:5]}-{code[5:]}"


def public_status(c: Complaint, hazard: Hazard | None) -> str:
    """received → accepted | rejected; an accepted report then follows its hazard: rectifying (a notice is out),
    rectified (closed as rectified, or after a penalty), closed (closed otherwise: nothing to rectify on site)."""
    if c.status != ACCEPTED or hazard is None:
        return c.status
    if hazard.status == HazardStatus.OPEN:
        return ACCEPTED
    if hazard.status != HazardStatus.CLOSED:
        return "rectifying"
    return "closed" if hazard.outcome == "withdrawn" else "rectified"


def public_view(c: Complaint, hazard: Hazard | None) -> dict[str, Any]:
    """What anyone holding the receipt learns: where the report stands. No names, no other data."""
    out: dict[str, Any] = {"receipt": shown_receipt(c.receipt), "status": public_status(c, hazard),
                           "received_at": iso(c.received_at)}
    if c.status == REJECTED:
        out["reason"] = c.reject_reason
    return out


def own_view(c: Complaint, hazard: Hazard | None, units: Mapping[str, Unit]) -> dict[str, Any]:
    """An assistant's own report: what it filed and where it stands (no officer's name)."""
    unit = units.get(c.unit_id) if c.unit_id else None
    return {**public_view(c, hazard), "id": c.id, "description": c.description, "address": c.address,
            "lat": c.lat, "lon": c.lon, "unit_id": c.unit_id, "unit_name": unit.name if unit else None,
            "facility": c.facility}


def officer_view(c: Complaint, hazard: Hazard | None, units: Mapping[str, Unit], station_name: str,
                 has_photo: bool) -> dict[str, Any]:
    """The triage queue's view: the whole report, its routing and triage, and the hazard it became."""
    unit = units.get(c.unit_id) if c.unit_id else None
    return {
        "id": c.id, "receipt": shown_receipt(c.receipt), "source": c.source, "status": c.status,
        "public_status": public_status(c, hazard), "description": c.description, "lat": c.lat, "lon": c.lon,
        "address": c.address, "unit_id": c.unit_id, "unit_name": unit.name if unit else None,
        "facility": c.facility, "contact_phone": c.contact_phone, "reporter": c.reporter, "ticket": c.ticket,
        "station_id": c.station_id, "station_name": station_name, "routed_by": c.routed_by,
        "received_at": iso(c.received_at), "triaged_at": iso(c.triaged_at), "triaged_by": c.triaged_by,
        "reject_reason": c.reject_reason, "hazard_id": c.hazard_id,
        "hazard_status": hazard.status if hazard is not None else None,
        "photo": f"/api/complaints/{c.id}/photo" if has_photo else None,
    }
