"""What the hash-chained record says about an incident's evidence files (the SHA-256 to check them against)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from dispatch.db import Database
from dispatch.models import RecordEntry

EVIDENCE_SAVED = "evidence.saved"  # camera snapshot/clip or phone photo: {file, sha256, kind, camera_id}
DETECTION_FRAME = "detection.frame"  # a detector's frame: {alarm_id, camera_id, file, sha256, raw_file?, ...}


async def entries(db: Database, incident_id: int, action: str) -> list[dict[str, Any]]:
    """The data of an incident's record entries of one action, oldest first."""
    async with db.session() as s:
        rows = (await s.scalars(select(RecordEntry.data).where(
            RecordEntry.incident_id == incident_id, RecordEntry.action == action).order_by(RecordEntry.id))).all()
    return [r for r in rows if isinstance(r, dict)]


async def recorded_sha256(db: Database, incident_id: int) -> dict[str, str]:
    """file (incident-{id}/{name}) → the SHA-256 recorded when it was saved (the latest entry wins)."""
    return {str(d["file"]): str(d["sha256"]) for d in await entries(db, incident_id, EVIDENCE_SAVED)
            if d.get("file") and d.get("sha256")}
