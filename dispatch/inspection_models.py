"""Tables of typed inspections (消防监督检查): the inspection, its answered checklist items, its photos and the
hazards it rechecked.

An inspection is stored whole, once, in one transaction: its 消防监督检查记录 is printed from these rows (their
content hash is in the record), so nothing here changes after it is submitted. Photos are received first (a phone
sends them when it has signal) and attached by the submission that names them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

import dispatch.hazard_models  # noqa: F401  (the hazards and rechecks these rows name)
from dispatch.models import Base


class InspectionItem(Base):
    """One checklist item as answered, with what it was when asked (text and clause as printed)."""

    __tablename__ = "inspection_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id"), index=True)
    position: Mapped[int]
    item_id: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(String(200))  # the item's Chinese text, as asked
    clause_key: Mapped[str] = mapped_column(String(40))
    clause: Mapped[dict[str, Any]] = mapped_column(JSON)  # {key, citation, text} as cited
    category: Mapped[str] = mapped_column(String(40))
    result: Mapped[str] = mapped_column(String(8))  # pass | fail | na
    note: Mapped[str] = mapped_column(Text, default="")
    hazard_id: Mapped[int | None] = mapped_column(ForeignKey("hazards.id"))  # the hazard a failure created/named


class InspectionPhoto(Base):
    """A photo taken during an inspection: re-encoded (metadata stripped), stamped with the phone's time and place,
    received before the submission that attaches it (inspection_id is null until then)."""

    __tablename__ = "inspection_photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))  # the phone's id of the photo: a resend is the same photo
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"), index=True)
    inspection_id: Mapped[int | None] = mapped_column(ForeignKey("inspections.id"), index=True)
    item_id: Mapped[str | None] = mapped_column(String(64))
    content_type: Mapped[str] = mapped_column(String(40))
    size: Mapped[int]
    width: Mapped[int]
    height: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    taken_at: Mapped[datetime | None]  # the phone's clock
    lat: Mapped[float | None]  # the phone's position when taken
    lon: Mapped[float | None]
    received_at: Mapped[datetime]  # the server's clock
    uploaded_by: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("uploaded_by", "client_id", name="uq_inspection_photos_client"),)


class InspectionRecheck(Base):
    """A hazard rechecked by a recheck inspection (复查), with the result, and the recheck row it made."""

    __tablename__ = "inspection_rechecks"
    id: Mapped[int] = mapped_column(primary_key=True)
    inspection_id: Mapped[int] = mapped_column(ForeignKey("inspections.id"), index=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id"), index=True)
    rectified: Mapped[bool]
    note: Mapped[str] = mapped_column(Text, default="")
    recheck_id: Mapped[int] = mapped_column(ForeignKey("rechecks.id"))


class Inspection(Base):
    """消防监督检查记录: who inspected which unit, when, of which kind, against which checklist version, the answers,
    photos, signature, and the hazards it created or rechecked. `idempotency_key` (the phone's) is unique: a resent
    submission finds the stored one."""

    __tablename__ = "inspections"
    id: Mapped[int] = mapped_column(primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    number: Mapped[str] = mapped_column(String(80), unique=True)
    year: Mapped[int]
    seq: Mapped[int]
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"), index=True)
    station_id: Mapped[str | None] = mapped_column(String(64), index=True)  # the unit's station when inspected
    unit_snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)  # the unit as printed: name, address, type, people
    kind: Mapped[str] = mapped_column(String(16))  # daily | pre_opening | recheck
    unit_type: Mapped[str] = mapped_column(String(40))
    checklist_version: Mapped[int]
    started_at: Mapped[datetime | None]  # the phone's clock, when the checklist was opened
    submitted_at: Mapped[datetime]  # the server's clock, when stored
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    officer: Mapped[str] = mapped_column(String(64))
    officer_name: Mapped[str] = mapped_column(String(100), default="")  # as printed: real name and badge
    co_officers: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)  # [{username, name}]
    note: Mapped[str] = mapped_column(Text, default="")
    signer_name: Mapped[str] = mapped_column(String(100), default="")  # the unit's person who signed
    signature_png: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    signature_sha256: Mapped[str] = mapped_column(String(64))
    results_sha256: Mapped[str] = mapped_column(String(64))

    items: Mapped[list[InspectionItem]] = relationship(lazy="selectin", order_by=InspectionItem.position)
    photos: Mapped[list[InspectionPhoto]] = relationship(lazy="selectin", order_by=InspectionPhoto.id)
    rechecks: Mapped[list[InspectionRecheck]] = relationship(lazy="selectin", order_by=InspectionRecheck.id)
