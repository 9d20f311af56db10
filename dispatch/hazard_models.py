"""Tables of hazard supervision: hazards, evidence, rectification notices, rechecks, penalty decisions.

They share `Base` with dispatch.models, so Alembic sees one metadata. Law clauses live in configuration
(config.hazards.HazardsConfig.law_clauses); each document stores the clause texts it cited, so a later
config change never rewrites an issued document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from dispatch.models import Base


class Hazard(Base):
    __tablename__ = "hazards"
    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"), index=True)
    category: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(16))  # general | major
    source: Mapped[str] = mapped_column(String(16))  # detection | patrol | inspection
    status: Mapped[str] = mapped_column(String(24))
    description: Mapped[str] = mapped_column(Text, default="")
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    camera_id: Mapped[str | None] = mapped_column(String(64))
    zone: Mapped[str | None] = mapped_column(String(64))
    camera_visible: Mapped[bool] = mapped_column(default=False)
    found_at: Mapped[datetime]
    found_by: Mapped[str] = mapped_column(String(64))
    deadline: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(24))  # rectified | penalty_closed | withdrawn
    # the law clauses a failed inspection item checked (cited first on its notice), and that inspection
    clauses: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")
    inspection_id: Mapped[int | None] = mapped_column(index=True)  # inspections.id (no constraint: made after it)

    __table_args__ = (Index("ix_hazards_status", "status"),)


class HazardEvidence(Base):
    """A photo or snapshot. Bytes are kept in the database; their SHA-256 is in the hash-chained record."""

    __tablename__ = "hazard_evidence"
    id: Mapped[int] = mapped_column(primary_key=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id"), index=True)
    stage: Mapped[str] = mapped_column(String(16))  # before | proof | recheck | after
    content_type: Mapped[str] = mapped_column(String(40))
    filename: Mapped[str] = mapped_column(String(200), default="")
    size: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[str] = mapped_column(Text, default="")
    uploaded_at: Mapped[datetime]
    uploaded_by: Mapped[str] = mapped_column(String(64))


class RectificationNotice(Base):
    """责令限期改正通知书 (kind "deadline"), or 责令立即改正通知书 (kind "immediate": a violation corrected on the spot;
    its deadline is the moment it was issued, and `basis` holds the item-level clause the order rests on)."""

    __tablename__ = "rectification_notices"
    id: Mapped[int] = mapped_column(primary_key=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id"), index=True)
    number: Mapped[str] = mapped_column(String(80), unique=True)
    year: Mapped[int]
    seq: Mapped[int]
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(64))
    # the issuing officer as printed (real name and badge, Actor.signature), fixed when issued
    issued_by_name: Mapped[str] = mapped_column(String(100), default="", server_default="")
    deadline: Mapped[datetime]
    requirement: Mapped[str] = mapped_column(Text, default="")
    clauses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # cited clause snapshots
    kind: Mapped[str] = mapped_column(String(16), default="deadline", server_default="deadline")
    basis: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # the order's basis (immediate)


class Recheck(Base):
    """复查: by camera (system) or by an officer."""

    __tablename__ = "rechecks"
    id: Mapped[int] = mapped_column(primary_key=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))  # camera | officer
    rectified: Mapped[bool]
    note: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
    by: Mapped[str] = mapped_column(String(64))
    evidence_id: Mapped[int | None] = mapped_column(ForeignKey("hazard_evidence.id"))


class RecheckOpinion(Base):
    """复查意见书: an officer's recheck of a notice, printed from its own snapshot (the notice cited, its deadline,
    the result and note, the officer as printed), issued with the recheck."""

    __tablename__ = "recheck_opinions"
    id: Mapped[int] = mapped_column(primary_key=True)
    recheck_id: Mapped[int] = mapped_column(ForeignKey("rechecks.id"), unique=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id"), index=True)
    notice_id: Mapped[int] = mapped_column(ForeignKey("rectification_notices.id"))
    number: Mapped[str] = mapped_column(String(80), unique=True)
    year: Mapped[int]
    seq: Mapped[int]
    issued_at: Mapped[datetime]  # the recheck's time
    issued_by: Mapped[str] = mapped_column(String(64))
    issued_by_name: Mapped[str] = mapped_column(String(100), default="")
    notice_number: Mapped[str] = mapped_column(String(80))
    notice_issued_at: Mapped[datetime]
    deadline: Mapped[datetime]
    rectified: Mapped[bool]
    note: Mapped[str] = mapped_column(Text, default="")


class CaseReferral(Base):
    """案件移送书: a penalty beyond the station's authority, referred to the fire-rescue authority instead of decided.
    Drafted by an officer (numbered), approved by a supervisor who is not that officer (sealed and dated then)."""

    __tablename__ = "case_referrals"
    id: Mapped[int] = mapped_column(primary_key=True)
    penalty_id: Mapped[int] = mapped_column(ForeignKey("penalty_decisions.id"), unique=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id"), index=True)
    number: Mapped[str] = mapped_column(String(80), unique=True)
    year: Mapped[int]
    seq: Mapped[int]
    status: Mapped[str] = mapped_column(String(16))  # proposed | approved
    receiving_authority: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(16))
    person_name: Mapped[str] = mapped_column(String(100), default="")
    person_id: Mapped[str] = mapped_column(String(32), default="")
    kind: Mapped[str] = mapped_column(String(16))
    amount_yuan: Mapped[int] = mapped_column(default=0)
    facts: Mapped[str] = mapped_column(Text, default="")
    clauses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)  # the penalty clauses (item level)
    reason: Mapped[str] = mapped_column(Text, default="")  # why the station may not decide it (printed)
    evidence: Mapped[list[str]] = mapped_column(JSON, default=list)  # the materials transferred, as listed
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(64))
    issued_by_name: Mapped[str] = mapped_column(String(100), default="")
    approved_at: Mapped[datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_by_name: Mapped[str] = mapped_column(String(100), default="")


class PenaltyNotice(Base):
    """行政处罚告知书: served before the decision with the facts, the basis and the intended penalty, and the party's
    right to state and defend (and to a hearing for a large fine) by `reply_by`. Printed from its own snapshot."""

    __tablename__ = "penalty_notices"
    id: Mapped[int] = mapped_column(primary_key=True)
    penalty_id: Mapped[int] = mapped_column(ForeignKey("penalty_decisions.id"), unique=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id"), index=True)
    number: Mapped[str] = mapped_column(String(80), unique=True)
    year: Mapped[int]
    seq: Mapped[int]
    issued_at: Mapped[datetime]
    issued_by: Mapped[str] = mapped_column(String(64))
    issued_by_name: Mapped[str] = mapped_column(String(100), default="")
    target: Mapped[str] = mapped_column(String(16))
    person_name: Mapped[str] = mapped_column(String(100), default="")
    person_id: Mapped[str] = mapped_column(String(32), default="")
    kind: Mapped[str] = mapped_column(String(16))
    amount_yuan: Mapped[int] = mapped_column(default=0)
    facts: Mapped[str] = mapped_column(Text, default="")
    clauses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    hearing: Mapped[bool] = mapped_column(default=False)  # the party may request a hearing (听证)
    reply_by: Mapped[datetime]
    statement: Mapped[str] = mapped_column(String(16), default="")  # "" | stated | waived
    statement_note: Mapped[str] = mapped_column(Text, default="")
    statement_at: Mapped[datetime | None]
    statement_by: Mapped[str | None] = mapped_column(String(64))


class PenaltyDecision(Base):
    """行政处罚决定书: proposed → confirmed (officer) → approved (supervisor) → paid/closed."""

    __tablename__ = "penalty_decisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    hazard_id: Mapped[int] = mapped_column(ForeignKey("hazards.id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    target: Mapped[str] = mapped_column(String(16))  # unit | individual
    person_name: Mapped[str] = mapped_column(String(100), default="")
    person_id: Mapped[str] = mapped_column(String(32), default="", server_default="")  # 身份证号 of an individual
    kind: Mapped[str] = mapped_column(String(16))  # fine | warning
    amount_yuan: Mapped[int] = mapped_column(default=0)
    facts: Mapped[str] = mapped_column(Text, default="")
    clauses: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    number: Mapped[str | None] = mapped_column(String(80), unique=True)
    year: Mapped[int | None]
    seq: Mapped[int | None]
    proposed_at: Mapped[datetime]
    proposed_by: Mapped[str] = mapped_column(String(64))
    confirmed_at: Mapped[datetime | None]
    confirmed_by: Mapped[str | None] = mapped_column(String(64))
    confirmed_by_name: Mapped[str] = mapped_column(String(100), default="", server_default="")  # as printed
    approved_at: Mapped[datetime | None]
    approved_by: Mapped[str | None] = mapped_column(String(64))
    approved_by_name: Mapped[str] = mapped_column(String(100), default="", server_default="")  # as printed
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(64))
    closure: Mapped[str | None] = mapped_column(String(16))  # paid | warned | rejected
    closure_note: Mapped[str] = mapped_column(Text, default="")


class KpiTarget(Base):
    """A volume target of one month (一键考评): how many inspections, notices or rechecks are expected of an officer
    (`officer` = login; "*" = each officer without a target of their own) or of the station in total
    (`scope` = station, `officer` = ""). Set by an admin; every change is also a `kpi.target_set` record entry,
    which is what the KPIs read (the row is the current value, for the pages)."""

    __tablename__ = "kpi_targets"
    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[str] = mapped_column(String(7))  # YYYY-MM (Asia/Shanghai)
    scope: Mapped[str] = mapped_column(String(16))  # officer | station
    officer: Mapped[str] = mapped_column(String(64))  # login, "*" (every officer) or "" (station)
    metric: Mapped[str] = mapped_column(String(32))  # inspections | notices_issued | rechecks_done
    target: Mapped[int]
    set_at: Mapped[datetime]
    set_by: Mapped[str] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("month", "scope", "officer", "metric", name="uq_kpi_targets_subject"),)
