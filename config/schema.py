"""Firelink configuration: pydantic models with a description per field.

Every model forbids unknown keys, so a typo in YAML is a clear error
naming the bad key instead of a silently ignored setting.
"""

from __future__ import annotations

import re
import socket
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from config.broker import AmqpConfig, Endpoint, split_endpoint
from config.calls import CallsConfig
from config.cameras import CameraConfig, VideoConfig
from config.complaints import ComplaintsConfig
from config.detectors import DetectorsConfig
from config.hazards import HazardsConfig

UNIT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
AGENCY_ID_PATTERN = r"^[a-z][a-z0-9_]{0,15}$"
"""An agency's key: in MQTT topics (firelink/dispatch/{agency}), API bodies and the 16-character database columns."""
CHANNEL_TYPE_PATTERN = r"^[a-z][a-z0-9_]{0,15}$"
BUILT_IN_CHANNELS = frozenset({"webhook", "mqtt"})
"""Channel types configured by their own fields (`webhooks:`, `mqtt:`), not in a `channels:` list."""


class FirelinkBaseModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(FirelinkBaseModel):
    url: str = Field(
        "sqlite+aiosqlite:///var/firelink.db",
        title="Database URL",
        description="SQLAlchemy async URL: sqlite+aiosqlite:///path or postgresql+asyncpg://user@host/db.",
    )
    echo: bool = Field(False, title="Echo SQL", description="Log every SQL statement (debugging only).")
    lease_s: float = Field(
        30.0, ge=3, le=3600, title="Core lease",
        description="One core per database: the running core renews a lease row every third of this; a second "
                    "core refuses to start until the lease is released or has expired this long after its last "
                    "renewal.",
    )


NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,26}$"
"""A cluster node's id: in its lease row's name (`node:{id}`, 32 characters) and its record chain's name."""


def default_node_id() -> str:
    """This host's name as a node id (characters a node id may not hold become '-', cut to 27)."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "-", socket.gethostname()).lstrip("-_.") or "node"
    return name[:27]


class ClusterConfig(FirelinkBaseModel):
    """Several cores sharing one PostgreSQL database (docs/cluster.md). Off: one core per database."""

    enabled: bool = Field(
        False, title="Cluster mode",
        description="Let several cores share this (PostgreSQL) database: per-node leases, one scheduler at a "
                    "time, one record chain per node, events fanned out through LISTEN/NOTIFY.")
    node_id: Annotated[str, Field(pattern=NODE_ID_PATTERN)] | None = Field(
        None, title="Node id",
        description="This core's name in the cluster (its lease and its record chain); default: the host name. "
                    "Two processes with the same node id refuse to run together.")
    head_key: SecretStr | None = Field(
        None, title="Chain head key",
        description="HMAC-SHA256 key signing each record chain's head (never logged); the same on every node and "
                    "for `firelink audit verify`. Required when the cluster is enabled.")
    scheduler_lease_s: float = Field(
        15.0, ge=3, le=600, title="Scheduler lease",
        description="Escalation timers, hazard deadlines and the outbox run on one node at a time, holding a lease "
                    "renewed every third of this; another node takes over at most this long after the holder died.")
    outbox_claim_s: float = Field(
        60.0, ge=5, le=3600, title="Outbox claim",
        description="A delivery attempt claims its outbox row this long; a node that takes the scheduler over "
                    "retries a row claimed by the dead one only after its claim ran out (same idempotency key).")
    event_retention_s: float = Field(
        600.0, ge=10, le=86400, title="Event retention",
        description="How long committed events stay in cluster_events for nodes that reconnect to catch up.")
    cameras: dict[Annotated[str, Field(pattern=NODE_ID_PATTERN)], list[str]] = Field(
        default_factory=dict, title="Camera assignment",
        description="Which node watches which cameras (capture, detectors, evidence) by preference: node id → "
                    "camera ids. A camera listed under no node goes to any node; a node that died has its cameras "
                    "taken over by the others and given back when it returns (docs/cluster.md).")
    camera_lease_s: float = Field(
        20.0, ge=3, le=40, title="Camera lease",
        description="A node watches a camera while holding its lease, renewed every third of this; another node "
                    "takes a camera over at most this long (plus a third) after its holder died (at most 40 s, so "
                    "no camera is left unwatched for a minute).")

    def node(self) -> str:
        """The node id in effect (the host name unless configured)."""
        return self.node_id or default_node_id()


class MqttConfig(FirelinkBaseModel):
    host: str = Field("127.0.0.1", title="Broker host", description="MQTT broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, title="Broker port", description="MQTT broker TCP port.")
    username: str | None = Field(None, title="Username", description="MQTT username, if the broker needs one.")
    password: SecretStr | None = Field(None, title="Password", description="MQTT password (never logged).")
    client_id: str = Field(
        "firelink-core",
        title="Client id",
        description="Fixed client id: the broker keeps this persistent session's QoS-1 queue across restarts.",
    )
    topic_prefix: str = Field("firelink", title="Topic prefix", description="Root of every Firelink topic.")
    max_payload_bytes: int = Field(
        65536, ge=256, title="Max payload", description="Alarm/status payloads larger than this are rejected."
    )
    max_detection_bytes: int = Field(
        1 << 20, ge=1024, title="Max detection payload",
        description="Detector-worker messages (they carry a JPEG) larger than this are rejected.",
    )
    keepalive_s: int = Field(15, ge=5, title="Keepalive", description="MQTT keepalive in seconds.")
    embedded_broker: Literal["auto", "never"] = Field(
        "auto",
        title="Embedded broker",
        description="auto: when no broker answers at a loopback host:port, start an in-process amqtt broker.",
    )
    cluster_nodes: list[Endpoint] = Field(
        default_factory=list, title="Broker cluster nodes",
        description="A broker cluster's MQTT listeners, host:port (host/port then unused): the core connects to one "
                    "and moves to the next when it dies. Empty: the one broker at host:port.")
    intake: Literal["mqtt", "amqp"] = Field(
        "mqtt", title="Intake",
        description="mqtt: this core subscribes to the intake topics itself (one core, e.g. Mosquitto). amqp: the "
                    "cores share the broker's intake queue (`amqp:`, RabbitMQ) and MQTT is only used to publish.")

    def nodes(self) -> list[tuple[str, int]]:
        """The broker nodes to connect to, in order."""
        return [split_endpoint(n) for n in self.cluster_nodes] or [(self.host, self.port)]


class LoginThrottleConfig(FirelinkBaseModel):
    """Failed logins lock an account and a client address for growing periods (kept in memory, one core)."""

    account_free_failures: int = Field(
        5, ge=1, title="Free failures per account",
        description="Failed logins for one user name before it is locked (the right password is refused too).",
    )
    address_free_failures: int = Field(
        20, ge=1, title="Free failures per address",
        description="Failed logins from one client address, whatever the user name, before the address is locked.",
    )
    base_lock_s: float = Field(1.0, gt=0, title="First lock", description="Seconds of the first lock; each further "
                               "failure doubles it.")
    max_lock_s: float = Field(900.0, gt=0, title="Longest lock", description="Upper bound of one lock, in seconds.")
    forget_after_s: float = Field(
        3600.0, gt=0, title="Forget after",
        description="Failures are forgotten this long after the last one (a successful login forgets an "
                    "account's at once).",
    )


class ConsoleConfig(FirelinkBaseModel):
    host: str = Field("127.0.0.1", title="Listen host", description="Address the web console listens on.")
    port: int = Field(8080, ge=0, le=65535, title="Listen port", description="Web console port (0 = any free).")
    public_url: str | None = Field(
        None,
        title="Public URL",
        description="URL agencies use to reach the console (links in dispatches); default http://host:port.",
    )
    session_hours: int = Field(12, ge=1, title="Session lifetime", description="Hours a login stays valid.")
    secure_cookies: bool | Literal["auto"] = Field(
        "auto", title="Secure cookies",
        description="Mark the session cookie Secure. auto: when the login came over HTTPS (directly, or through a "
                    "proxy on this machine that sends X-Forwarded-Proto: https); true: always (serve over HTTPS "
                    "only); false: never.",
    )
    login_throttle: LoginThrottleConfig = Field(
        default_factory=LoginThrottleConfig, title="Login throttle",
        description="Growing lockouts after failed logins, per account and per client address.",
    )
    heavy_workers: int = Field(
        2, ge=1, le=32, title="Heavy reads at once",
        description="KPIs, PDF documents and exports computed at the same time (off the event loop).",
    )
    heavy_queue: int = Field(
        8, ge=0, le=1000, title="Heavy reads waiting",
        description="Heavy requests that may wait for a turn; more are answered 503 with Retry-After.",
    )
    kpi_max_age_s: float = Field(
        2.0, ge=0, le=3600, title="KPI answer reuse",
        description="Seconds a computed KPI answer is reused for the same question while the record grows.",
    )


class DeviceConfig(FirelinkBaseModel):
    id: str = Field(..., pattern=UNIT_ID_PATTERN, title="Device id", description="Id used in MQTT topics.")
    kind: str = Field("one_key_button", title="Kind", description="e.g. one_key_button, smoke_detector, panel.")
    heartbeat_interval_s: int = Field(
        60, ge=1, title="Heartbeat interval", description="Silent longer than this → offline fault."
    )


class UnitConfig(FirelinkBaseModel):
    id: str = Field(..., pattern=UNIT_ID_PATTERN, title="Unit id", description="Stable id used in topics/URLs.")
    name: str = Field(..., min_length=1, title="Name", description="Unit name shown to officers.")
    category: str = Field("其他", title="Category", description="单位类别, e.g. 学校, 宾馆/旅馆, 商场/市场.")
    address: str = Field("", title="Address", description="Street address sent to agencies.")
    lat: float | None = Field(None, ge=-90, le=90, title="Latitude", description="WGS-84 latitude.")
    lon: float | None = Field(None, ge=-180, le=180, title="Longitude", description="WGS-84 longitude.")
    contact_name: str = Field("", title="Contact", description="Person responsible at the unit.")
    contact_phone: str = Field("", title="Contact phone", description="Phone of the contact person.")
    unit_type: str | None = Field(
        None, pattern=r"^[a-z][a-z0-9_]{0,39}$", title="Unit type",
        description="Code in the unit taxonomy (config/unit_taxonomy.yaml); default: the type the category names.")
    station: str | None = Field(
        None, pattern=UNIT_ID_PATTERN, title="Station",
        description="Id of the responsible police station (an organisation of level station); default: station.id.")
    devices: list[DeviceConfig] = Field(
        default_factory=list, title="Devices", description="Alarm buttons/detectors/gateways."
    )


class WebhookChannel(FirelinkBaseModel):
    url: str = Field(..., title="URL", description="Agency endpoint receiving the dispatch JSON (POST).")
    secret: SecretStr = Field(
        ..., title="HMAC secret", description="Key for X-Firelink-Signature (HMAC-SHA256 of the body)."
    )
    timeout_s: float = Field(5.0, gt=0, title="Timeout", description="Per-attempt HTTP timeout in seconds.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("webhook url must start with http:// or https://")
        return v


class ChannelConfig(FirelinkBaseModel):
    """An outbound channel provided by a plug-in (SMS or voice gateway, ...): the worker delivers through the channel
    registered under `type` (notify.channels); the core refuses to start when none is."""

    type: str = Field(..., pattern=CHANNEL_TYPE_PATTERN, title="Type",
                      description="Name of the registered channel, e.g. sms.")
    target: str = Field(..., min_length=1, max_length=400, title="Target",
                        description="Where to: a phone number, a gateway URL, ... (as the channel reads it).")
    settings: dict[str, str | int | float | bool] = Field(
        default_factory=dict, title="Settings", description="Channel-specific options (not secret).")
    secrets: dict[str, SecretStr] = Field(
        default_factory=dict, title="Secrets", description="Channel-specific credentials (never logged or shown).")

    @field_validator("type")
    @classmethod
    def _not_built_in(cls, v: str) -> str:
        if v in BUILT_IN_CHANNELS:
            raise ValueError(f"{v} channels are configured under {v}s:" if v == "webhook" else
                             f"the {v} channel is configured with {v}: true|false")
        return v


class LocalText(FirelinkBaseModel):
    zh: str = Field(..., min_length=1, max_length=40, title="Chinese", description="Shown by default.")
    en: str = Field("", max_length=40, title="English", description="Shown with the English toggle; empty: zh.")


class AgencyConfig(FirelinkBaseModel):
    name: str = Field(..., title="Name", description="Shown on the console, e.g. 消防救援大队 (119).")
    phone: str = Field("", max_length=16, title="Short number",
                       description="Emergency number, e.g. 119 (on the dispatch buttons: 仅 119).")
    label: LocalText | None = Field(
        None, title="Label", description="Short name on badges and buttons, e.g. {zh: 消防 119, en: Fire 119}; "
                                         "default: the name.")
    webhooks: list[WebhookChannel] = Field(
        default_factory=list, title="Webhooks", description="HTTP channels; each gets every dispatch."
    )
    mqtt: bool = Field(
        True, title="MQTT channel", description="Also publish dispatches to firelink/dispatch/{agency}."
    )
    channels: list[ChannelConfig] = Field(
        default_factory=list, title="Other channels",
        description="Channels provided by plug-ins (notify.channels), e.g. an SMS gateway; each gets every dispatch.")
    oversight: bool = Field(
        False, title="Oversight",
        description="The agency supervises the stations' fire work (the fire-rescue brigade): its users read the "
                    "hazards, documents and KPIs of the stations of their organisation (all without one).")
    ack_token: SecretStr | None = Field(
        None,
        title="Ack token",
        description="Bearer token the agency's system uses for POST /api/dispatches/{id}/ack.",
    )

    def labels(self) -> LocalText:
        """The short label, with the defaults filled in (zh: the name; en: zh)."""
        label = self.label or LocalText(zh=self.name[:40])
        return label if label.en else LocalText(zh=label.zh, en=label.zh)


AgencyKey = Annotated[str, Field(pattern=AGENCY_ID_PATTERN)]


class LeaderChannel(FirelinkBaseModel):
    webhooks: list[WebhookChannel] = Field(
        default_factory=list, title="Webhooks", description="Endpoints told about escalations."
    )
    mqtt: bool = Field(True, title="MQTT", description="Publish escalations to firelink/leader/escalation.")
    channels: list[ChannelConfig] = Field(
        default_factory=list, title="Other channels", description="Plug-in channels told about escalations.")


class EscalationConfig(FirelinkBaseModel):
    ack_timeout_s: float = Field(
        30, gt=0, title="Ack timeout", description="Unacknowledged this long → escalate (and again each time)."
    )
    max_level: int = Field(3, ge=1, title="Max level", description="Escalation stops re-alerting past this.")
    merge_window_s: float = Field(
        300, ge=0, title="Merge window", description="Alarms from a unit within this of its last alarm join."
    )


class DeliveryConfig(FirelinkBaseModel):
    initial_backoff_s: float = Field(0.5, gt=0, title="Initial backoff", description="First retry delay.")
    max_backoff_s: float = Field(60, gt=0, title="Max backoff", description="Retry delay ceiling.")


class StationConfig(FirelinkBaseModel):
    id: str = Field("station-1", pattern=UNIT_ID_PATTERN, title="Station id", description="派出所 id.")
    name: str = Field("派出所", title="Station name", description="Police station name (UI).")
    leader: LeaderChannel = Field(default_factory=LeaderChannel, title="Leader", description="Escalations.")


OrgLevel = Literal["city", "brigade", "station"]
ORG_LEVELS: tuple[OrgLevel, ...] = ("city", "brigade", "station")  # top to bottom: 市局 → 大队/分局 → 派出所


class OrgConfig(FirelinkBaseModel):
    id: str = Field(..., pattern=UNIT_ID_PATTERN, title="Id", description="Stable id of the organisation.")
    name: str = Field(..., min_length=1, max_length=100, title="Name", description="e.g. 环江县公安局, 城北派出所.")
    level: OrgLevel = Field(..., title="Level", description="city (市局), brigade (大队/分局) or station (派出所).")
    parent: str | None = Field(None, pattern=UNIT_ID_PATTERN, title="Parent",
                               description="Id of the organisation one level up; none for the city.")


# The roles of dispatch.roles.ROLE_TABLE (what each may do is there; tests/test_org_tree.py keeps the two equal).
RoleName = Literal["admin", "station_chief", "deputy_chief", "duty_officer", "community_officer", "assessor",
                   "brigade_reviewer", "city_supervisor", "unit", "agency", "assistant"]


class BootstrapUser(FirelinkBaseModel):
    username: str = Field(..., min_length=1, title="Username", description="Login name.")
    password: SecretStr | None = Field(None, title="Password", description="Initial password (plain).")
    password_hash: str | None = Field(
        None,
        pattern=r"^\$argon2id\$",
        title="Password hash",
        description="Argon2id hash instead of a plain password, so the YAML holds no password.",
    )
    role: RoleName = Field(
        ..., title="Role", description="What the user may see and do (dispatch/roles.py; assistant: a "
                                       "village/community fire assistant, 村级消防员/网格员, who files reports "
                                       "and sees only its own)."
    )
    unit_id: str | None = Field(None, title="Unit", description="For role unit: the unit it belongs to.")
    agency: str | None = Field(None, title="Agency", description="For role agency: the key of a configured agency.")
    real_name: str = Field("", max_length=64, title="Real name",
                           description="姓名 printed on notices and decisions instead of the login name.")
    badge: str = Field("", pattern=r"^([0-9A-Za-z]{4,16})?$", title="Badge number",
                       description="警号 printed with the real name on documents (4–16 letters or digits).")
    org: str | None = Field(None, pattern=UNIT_ID_PATTERN, title="Organisation",
                            description="Organisation the user works for (what it sees); default: station.id.")

    @model_validator(mode="after")
    def _one_password(self) -> BootstrapUser:
        if (self.password is None) == (self.password_hash is None):
            raise ValueError(f"user {self.username!r}: give exactly one of password or password_hash")
        if self.badge and not self.real_name:
            raise ValueError(f"user {self.username!r}: a badge number needs the real name it belongs to")
        return self


class FirelinkConfig(FirelinkBaseModel):
    database: DatabaseConfig = Field(default_factory=DatabaseConfig, title="Database", description="Storage.")
    cluster: ClusterConfig = Field(
        default_factory=ClusterConfig, title="Cluster",
        description="Several cores on one PostgreSQL database (off: one core per database).")
    mqtt: MqttConfig = Field(default_factory=MqttConfig, title="MQTT", description="Broker connection.")
    amqp: AmqpConfig = Field(default_factory=AmqpConfig, title="AMQP intake",
                             description="A RabbitMQ cluster's shared intake queue (when mqtt.intake is amqp).")
    console: ConsoleConfig = Field(default_factory=ConsoleConfig, title="Console", description="Web console.")
    station: StationConfig = Field(default_factory=StationConfig, title="Station", description="This station.")
    escalation: EscalationConfig = Field(
        default_factory=EscalationConfig, title="Escalation", description="Timers."
    )
    delivery: DeliveryConfig = Field(
        default_factory=DeliveryConfig, title="Delivery", description="Outbox retry policy."
    )
    agencies: dict[AgencyKey, AgencyConfig] = Field(
        default_factory=dict, title="Agencies",
        description="Linked-dispatch targets by key (lower-case letters, digits, _; e.g. fire, medical, gas).",
    )
    organisations: list[OrgConfig] = Field(
        default_factory=list, title="Organisations",
        description="The command tree city → brigade → station. Empty: one city and one brigade above `station`.")
    units: list[UnitConfig] = Field(default_factory=list, title="Units", description="Key units supervised.")
    cameras: list[CameraConfig] = Field(default_factory=list, title="Cameras", description="Video sources.")
    video: VideoConfig = Field(default_factory=VideoConfig, title="Video", description="Live video and evidence.")
    calls: CallsConfig = Field(
        default_factory=CallsConfig, title="Calls",
        description="Voice and live phone video between the command room, the unit and the brigade (docs/calls.md).")
    detectors: DetectorsConfig = Field(
        default_factory=DetectorsConfig, title="Detectors", description="Smoke/fire and blocked-exit detectors."
    )
    hazards: HazardsConfig = Field(
        default_factory=HazardsConfig,
        title="Hazards",
        description="Hazard supervision: categories, law clauses, penalty rules, KPI targets, scoring.",
    )
    complaints: ComplaintsConfig = Field(
        default_factory=ComplaintsConfig, title="Complaints",
        description="Public reports, the 96119 hotline gateway and assistants' reports: limits, triage routing.",
    )
    users: list[BootstrapUser] = Field(
        default_factory=list, title="Users", description="Accounts created at start if missing."
    )
    print_first_admin: bool = Field(
        False,
        title="Print first admin",
        description="When no admin exists, create one with a random password and print it to the terminal.",
    )
    log_level: str = Field("INFO", title="Log level", description="Python logging level.")

    @model_validator(mode="after")
    def _check_refs(self) -> FirelinkConfig:
        self._check_organisations()
        self._check_cluster()
        unit_ids = [u.id for u in self.units]
        dupes = {u for u in unit_ids if unit_ids.count(u) > 1}
        if dupes:
            raise ValueError(f"duplicate unit ids: {sorted(dupes)}")
        device_ids = [d.id for u in self.units for d in u.devices]
        dupes = {d for d in device_ids if device_ids.count(d) > 1}
        if dupes:
            raise ValueError(f"duplicate device ids: {sorted(dupes)}")
        known = set(unit_ids)
        for cam in self.cameras:
            if cam.unit_id not in known:
                raise ValueError(f"camera {cam.id!r} names unknown unit {cam.unit_id!r}")
        for user in self.users:
            if user.role == "unit" and user.unit_id not in known:
                raise ValueError(f"user {user.username!r}: role unit needs a known unit_id")
            if user.role == "agency" and user.agency not in self.agencies:
                raise ValueError(f"user {user.username!r}: role agency needs the key of a configured agency "
                                 f"({', '.join(self.agencies) or 'none configured'})")
        return self

    def orgs(self) -> list[OrgConfig]:
        """The organisations as configured, or by default one city and one brigade above `station`."""
        return self.organisations or [
            OrgConfig(id="city", name="市公安局", level="city"),
            OrgConfig(id="brigade", name="公安分局", level="brigade", parent="city"),
            OrgConfig(id=self.station.id, name=self.station.name, level="station", parent="brigade")]

    def _check_camera_assignment(self) -> None:
        known = {c.id for c in self.cameras}
        owner: dict[str, str] = {}
        for node, ids in self.cluster.cameras.items():
            unknown = sorted(set(ids) - known)
            if unknown:
                raise ValueError(f"cluster.cameras.{node}: unknown camera id(s) {', '.join(unknown)} (not in cameras:)")
            for cid in ids:
                if owner.setdefault(cid, node) != node:
                    raise ValueError(f"cluster.cameras: camera {cid!r} is assigned to two nodes, {owner[cid]!r} and "
                                     f"{node!r}; a camera has one preferred node")

    def _check_cluster(self) -> None:
        self._check_camera_assignment()
        if not self.cluster.enabled:
            return
        if not self.database.url.startswith("postgresql"):
            raise ValueError("cluster.enabled needs PostgreSQL (database.url postgresql+asyncpg://…): several "
                             "cores cannot share a SQLite file; turn the cluster off for a single box")
        if self.cluster.head_key is None or not self.cluster.head_key.get_secret_value():
            raise ValueError("cluster.enabled needs cluster.head_key (the key signing each node's record chain "
                             "head; the same on every node)")

    def _check_organisations(self) -> None:
        by_id: dict[str, OrgConfig] = {}
        for org in self.orgs():
            if by_id.setdefault(org.id, org) is not org:
                raise ValueError(f"duplicate organisation id {org.id!r}")
        for org in by_id.values():
            depth = ORG_LEVELS.index(org.level)
            parent = by_id.get(org.parent) if org.parent else None
            if depth == 0 and org.parent is not None:
                raise ValueError(f"organisation {org.id!r}: a city has no parent")
            if depth > 0 and (parent is None or ORG_LEVELS.index(parent.level) != depth - 1):
                raise ValueError(f"organisation {org.id!r}: a {org.level} needs a parent of level "
                                 f"{ORG_LEVELS[depth - 1]}")
        stations = {o.id for o in by_id.values() if o.level == "station"}
        if self.station.id not in stations:
            raise ValueError(f"station.id {self.station.id!r} is not an organisation of level station")
        for unit in self.units:
            if unit.station is not None and unit.station not in stations:
                raise ValueError(f"unit {unit.id!r}: station {unit.station!r} is not an organisation of level station")
        for user in self.users:
            if user.org is not None and user.org not in by_id:
                raise ValueError(f"user {user.username!r}: unknown organisation {user.org!r}")

    def station_of(self, unit: UnitConfig) -> str:
        return unit.station or self.station.id

    def public_url(self) -> str:
        return self.console.public_url or f"http://{self.console.host}:{self.console.port}"
