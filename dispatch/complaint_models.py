"""Tables of complaints and outside reports (投诉举报): what the public, the 96119 hotline and village/community fire
assistants report, routed to a station's triage queue, and its one photo (re-encoded, metadata stripped).

They share `Base` with dispatch.models, so Alembic sees one metadata (migration 0014_complaints).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models import Base


class Complaint(Base):
    """A report in the triage queue of `station_id`: received → accepted (it became `hazard_id`) or rejected (with
    `reject_reason`). The reporter follows it by `receipt`; an accepted one's public status follows its hazard."""

    __tablename__ = "complaints"
    id: Mapped[int] = mapped_column(primary_key=True)
    receipt: Mapped[str] = mapped_column(String(16), unique=True)  # random, e.g. "K7QH3M9TRW" (no 0/O/1/I/L/U)
    source: Mapped[str] = mapped_column(String(16))  # public | hotline | assistant
    status: Mapped[str] = mapped_column(String(16))  # received | accepted | rejected
    description: Mapped[str] = mapped_column(Text)
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    address: Mapped[str] = mapped_column(String(400), default="")
    unit_id: Mapped[str | None] = mapped_column(ForeignKey("units.id"))
    facility: Mapped[str] = mapped_column(String(64), default="")  # the facility's code from a QR code
    contact_phone: Mapped[str] = mapped_column(String(40), default="")  # shown to officers only
    station_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"))  # whose triage queue
    routed_by: Mapped[str] = mapped_column(String(16))  # unit | location | default (docs/complaints.md)
    reporter: Mapped[str] = mapped_column(String(64), default="")  # assistant login or hotline name; "" public
    ticket: Mapped[str | None] = mapped_column(String(64), unique=True)  # the hotline's own ticket id
    received_at: Mapped[datetime]
    triaged_at: Mapped[datetime | None]
    triaged_by: Mapped[str | None] = mapped_column(String(64))
    reject_reason: Mapped[str] = mapped_column(Text, default="")
    hazard_id: Mapped[int | None] = mapped_column(ForeignKey("hazards.id"))

    __table_args__ = (Index("ix_complaints_station_status", "station_id", "status"),
                      Index("ix_complaints_reporter", "reporter"))


class ComplaintPhoto(Base):
    """The report's photo as stored: re-encoded to JPEG (no EXIF/GPS, nothing after the image). Bytes are kept in
    the database like hazard evidence; their SHA-256 is in the complaint's `complaint.received` record entry."""

    __tablename__ = "complaint_photos"
    id: Mapped[int] = mapped_column(primary_key=True)
    complaint_id: Mapped[int] = mapped_column(ForeignKey("complaints.id"), unique=True)
    content_type: Mapped[str] = mapped_column(String(40))
    width: Mapped[int]
    height: Mapped[int]
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
