"""Database tables (SQLAlchemy 2.x declarative). Schema changes go through Alembic."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


def table_of(model: type[Base]) -> Table:
    """A model's table, for Core statements on a hot path (a Core insert of plain rows skips the ORM's work)."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to a table")
    return table


class Organisation(Base):
    """A node of the command tree: city (市局) → brigade (大队/分局) → station (派出所)."""

    __tablename__ = "organisations"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    level: Mapped[str] = mapped_column(String(16))  # city | brigade | station
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"))


class Unit(Base):
    """A supervised unit (单位档案). Seeded from the config when missing; the registry edits it from then on."""

    __tablename__ = "units"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64))  # the unit type's Chinese name, as shown
    address: Mapped[str] = mapped_column(String(400), default="")
    lat: Mapped[float | None]
    lon: Mapped[float | None]
    contact_name: Mapped[str] = mapped_column(String(100), default="")  # 消防安全责任人
    contact_phone: Mapped[str] = mapped_column(String(40), default="")
    unit_type: Mapped[str] = mapped_column(String(40), default="other", server_default="other")
    station_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    credit_code: Mapped[str] = mapped_column(String(18), default="", server_default="")  # 统一社会信用代码
    safety_manager_name: Mapped[str] = mapped_column(String(100), default="", server_default="")  # 消防安全管理人
    safety_manager_phone: Mapped[str] = mapped_column(String(40), default="", server_default="")
    floors: Mapped[int | None]
    area_m2: Mapped[float | None]
    occupancy: Mapped[int | None]  # people at the busiest time
    facilities: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")  # fire facilities present
    community_officer: Mapped[str] = mapped_column(String(64), default="", server_default="")  # username
    retired_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # raised on every edit

    __table_args__ = (
        Index("uq_units_credit_code", "credit_code", unique=True, sqlite_where=text("credit_code <> ''"),
              postgresql_where=text("credit_code <> ''")),
        Index("ix_units_name", "name"),
        Index("ix_units_unit_type", "unit_type"),
    )


class Device(Base):
    __tablename__ = "devices"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"))
    kind: Mapped[str] = mapped_column(String(40))
    heartbeat_interval_s: Mapped[int]
    status: Mapped[str] = mapped_column(String(16), default="unknown")
    detail: Mapped[str] = mapped_column(String(400), default="")
    last_seen: Mapped[datetime | None]
    status_since: Mapped[datetime | None]


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    unit_id: Mapped[str | None] = mapped_column(String(64))
    agency: Mapped[str | None] = mapped_column(String(16))
    real_name: Mapped[str] = mapped_column(String(64), default="", server_default="")  # 姓名, printed on documents
    badge: Mapped[str] = mapped_column(String(16), default="", server_default="")  # 警号
    org_id: Mapped[str | None] = mapped_column(String(64))  # the organisation whose subtree the user sees
    created_at: Mapped[datetime]


class LoginSession(Base):
    """Server-side sessions: revocable, and the cookie carries only a random token."""

    __tablename__ = "sessions"
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]


class Incident(Base):
    __tablename__ = "incidents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    opened_at: Mapped[datetime]
    last_alarm_at: Mapped[datetime]
    alarm_count: Mapped[int] = mapped_column(default=1)
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime | None]
    on_scene_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(16))
    close_note: Mapped[str] = mapped_column(Text, default="")
    escalation_level: Mapped[int] = mapped_column(default=0)
    escalated_at: Mapped[datetime | None]
    # True on the unit's one incident that new alarms may merge into (its newest open one), else NULL: a partial
    # unique index keeps it one per unit whichever core writes (dispatch.intake, docs/cluster.md)
    merge_target: Mapped[bool | None] = mapped_column(default=None)

    __table_args__ = (Index("ix_incidents_unit_status", "unit_id", "status"),
                      Index("uq_incidents_unit_merge_target", "unit_id", unique=True,
                            sqlite_where=text("merge_target"), postgresql_where=text("merge_target")))


class Alarm(Base):
    __tablename__ = "alarms"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alarm_id: Mapped[str] = mapped_column(String(128), unique=True)
    unit_id: Mapped[str] = mapped_column(ForeignKey("units.id"))
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    device_id: Mapped[str | None] = mapped_column(String(64))
    device_ts: Mapped[datetime | None]
    received_at: Mapped[datetime]
    note: Mapped[str] = mapped_column(Text, default="")
    source: Mapped[str] = mapped_column(String(16))


class Dispatch(Base):
    """One agency linked to one incident; status advances pending→sent→delivered→acknowledged→on_scene.

    sent: a transport accepted it (e.g. the MQTT broker); delivered: the agency's side confirmed on some channel.
    """

    __tablename__ = "dispatches"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    agency: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    acknowledged_at: Mapped[datetime | None]
    acknowledged_by: Mapped[str | None] = mapped_column(String(64))
    on_scene_at: Mapped[datetime | None]
    # what each channel's far side confirmed (dispatch.channels): [{"key", "channel", "status", "at", ...}]
    channels: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class OutboxMessage(Base):
    """Transactional outbox: written with the state change, delivered (with retries) after commit."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dispatch_id: Mapped[int | None] = mapped_column(ForeignKey("dispatches.id"), index=True)
    channel: Mapped[str] = mapped_column(String(16))  # name in notify.channels: webhook | mqtt | a plug-in's
    channel_key: Mapped[str] = mapped_column(String(32), default="")  # key on Dispatch.channels: webhook-0, mqtt, ...
    target: Mapped[str] = mapped_column(String(400))  # URL, MQTT topic, phone number
    secret_ref: Mapped[str] = mapped_column(String(64), default="")  # config path of the channel (config.outbound)
    payload: Mapped[dict[str, Any]]
    idempotency_key: Mapped[str] = mapped_column(String(80))
    # pending (retried) | sent (MQTT broker accepted; done here, awaiting the agency's ack) | delivered
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str] = mapped_column(String(400), default="")
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    # cluster mode: the node attempting delivery, until when (a node taking the scheduler over waits it out)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    claimed_until: Mapped[datetime | None]

    __table_args__ = (Index("ix_outbox_pending", "status", "next_attempt_at"),)


class Message(Base):
    """Instructions from the officer to the unit, and the unit's replies."""

    __tablename__ = "messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"), index=True)
    sender: Mapped[str] = mapped_column(String(64))
    sender_role: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime]


class RecordEntry(Base):
    """Append-only record. Each entry's hash covers its content and the previous entry's hash."""

    __tablename__ = "records"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[int | None] = mapped_column(index=True)
    hazard_id: Mapped[int | None] = mapped_column(index=True)
    unit_id: Mapped[str | None] = mapped_column(String(64), index=True)  # a registry entry's unit (its history)
    action: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    data: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # the hash chain this entry continues: 'main' on a single box, one per node in cluster mode (dispatch.records)
    chain: Mapped[str] = mapped_column(String(40), default="main", server_default="main")

    __table_args__ = (Index("ix_records_chain_id", "chain", "id"),)


class ChainHead(Base):
    """The last entry of one record chain (cluster mode), moved in the same transaction as the entries it covers,
    only from the position the writer last saw (a fork fails the transaction), and signed (HMAC) so that rows cut
    off the chain's end are detected by `firelink audit verify`."""

    __tablename__ = "chain_heads"
    chain: Mapped[str] = mapped_column(String(40), primary_key=True)
    seq: Mapped[int]  # entries in the chain
    hash: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


class ClusterEvent(Base):
    """Events one core committed, for the others (cluster mode): written in the change's own transaction and
    announced by NOTIFY with this id (dispatch.fanout); kept `cluster.event_retention_s` for catching up."""

    __tablename__ = "cluster_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    node: Mapped[str] = mapped_column(String(40))
    events: Mapped[dict[str, Any]]  # {"events": [{"type": ..., "data": ...}, ...]}
    created_at: Mapped[datetime] = mapped_column(index=True)


class RejectedMessage(Base):
    """Input that was refused, with the reason, for the admin's view."""

    __tablename__ = "rejected_messages"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(16))
    topic: Mapped[str] = mapped_column(String(400))
    reason: Mapped[str] = mapped_column(String(400))
    excerpt: Mapped[str] = mapped_column(String(600))
    size: Mapped[int]


class IntakeAttempt(Base):
    """A redelivered MQTT message being tried again after a restart, counted before each try, so a message that
    keeps taking the core down is quarantined instead of killing every restart (ingest/mqtt_link). Rows live
    only until the message is settled."""

    __tablename__ = "intake_attempts"
    key: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of topic and payload
    tries: Mapped[int]
    tries_alone: Mapped[int]
    updated_at: Mapped[datetime]


class CameraRegion(Base):
    """Columns of every outline officers draw on a camera's picture (exit zones, detection masks): one table per
    kind, so each keeps only the columns it needs and its own unique (camera, id)."""

    __abstract__ = True
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[str] = mapped_column(String(64))
    zone_id: Mapped[str] = mapped_column(String(64))  # the outline's id on its camera (the URL's id)
    name: Mapped[str] = mapped_column(String(200), default="")
    polygon: Mapped[list[list[float]]] = mapped_column(JSON)  # normalised [x, y] points
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]
    updated_by: Mapped[str] = mapped_column(String(64))


class ExitZone(CameraRegion):
    """An exit zone drawn in the console (zones of the config file are not stored here).

    The clear reference JPEG is kept in the row, like hazard evidence, so it commits with the zone; its SHA-256
    is also written into the hash-chained record. The bytes are deferred: listing zones never loads them.
    """

    __tablename__ = "exit_zones"
    dwell_s: Mapped[float]
    min_fraction: Mapped[float]
    clear_s: Mapped[float]
    reference_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    reference_sha256: Mapped[str | None] = mapped_column(String(64))
    reference_size: Mapped[int | None]
    reference_width: Mapped[int | None]
    reference_height: Mapped[int | None]
    reference_at: Mapped[datetime | None]
    reference_by: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (UniqueConstraint("camera_id", "zone_id", name="uq_exit_zones_camera_zone"),)


class DetectorMask(CameraRegion):
    """A smoke/fire detection mask drawn in the console: detections mostly inside it are ignored (a stove, a lit
    sign). The config file's masks (`detectors.cameras[].masks`) are not stored here."""

    __tablename__ = "detector_masks"

    __table_args__ = (UniqueConstraint("camera_id", "zone_id", name="uq_detector_masks_camera_zone"),)


class CoreLease(Base):
    """Which core may write to this database (dispatch.lease): one row, renewed while that core runs. In cluster
    mode one row per node (`node:{id}`) and one per singleton job (`job:scheduler`)."""

    __tablename__ = "core_lease"
    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))  # random per process start
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int]
    acquired_at: Mapped[datetime]
    renewed_at: Mapped[datetime]
    expires_at: Mapped[datetime]
