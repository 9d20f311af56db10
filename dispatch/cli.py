"""The core's `firelink` commands (press, user add, db upgrade, audit verify); firelink/cli.py assembles the CLI."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from config import alarm_kinds
from config.schema import FirelinkConfig
from dispatch.roles import ROLES


def cmd_press(cfg: FirelinkConfig, args: argparse.Namespace) -> int:
    """Publishes exactly what a one-key button publishes, and waits for the broker's PUBACK."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    if args.unit_id not in {u.id for u in cfg.units}:
        print(f"warning: unit {args.unit_id!r} is not configured; the core will reject this alarm", file=sys.stderr)
    alarm_id = args.alarm_id or f"cli-{uuid.uuid4().hex}"
    payload: dict[str, str] = {"alarm_id": alarm_id, "kind": args.kind, "ts": datetime.now(UTC).isoformat(),
                               "device_id": args.device_id or f"{args.unit_id[:60]}-cli"}
    if args.note:
        payload["note"] = args.note
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"firelink-press-{uuid.uuid4().hex[:8]}")
    if cfg.mqtt.username:
        client.username_pw_set(cfg.mqtt.username,
                               cfg.mqtt.password.get_secret_value() if cfg.mqtt.password else None)
    try:
        client.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=30)
    except OSError as exc:
        print(f"error: cannot reach MQTT broker {cfg.mqtt.host}:{cfg.mqtt.port}: {exc}", file=sys.stderr)
        return 2
    client.loop_start()
    topic = f"{cfg.mqtt.topic_prefix}/units/{args.unit_id}/alarm"
    info = client.publish(topic, json.dumps(payload), qos=1)
    try:
        info.wait_for_publish(timeout=10)
    except (RuntimeError, ValueError) as exc:
        print(f"error: publish failed: {exc}", file=sys.stderr)
        return 2
    finally:
        client.disconnect()
        client.loop_stop()
    if not info.is_published():
        print("error: broker did not confirm the alarm within 10 s", file=sys.stderr)
        return 2
    print(json.dumps({"topic": topic, **payload}, ensure_ascii=False))
    return 0


def cmd_user_add(cfg: FirelinkConfig, args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from dispatch.auth import AuthError, add_user
    from dispatch.db import Database
    from dispatch.events import EventBus
    from dispatch.models import Unit
    from dispatch.writer import Writer

    if args.org is not None and args.org not in {o.id for o in cfg.orgs()}:
        print(f"error: unknown organisation {args.org!r} (config organisations: "
              f"{', '.join(o.id for o in cfg.orgs())})", file=sys.stderr)
        return 2
    password = args.password
    if password is None:
        try:
            password = getpass.getpass(f"password for {args.name}: ")
            if password != getpass.getpass("repeat: "):
                print("error: passwords differ", file=sys.stderr)
                return 2
        except EOFError:
            print("error: no password given (use --password or a terminal)", file=sys.stderr)
            return 2

    async def go() -> None:
        db = Database(cfg.database.url)
        try:
            await db.upgrade()
            # a writer of its own: this command appends no record entry, so it cannot fork a running core's chain
            writer = Writer(db, EventBus())
            async with db.session() as s:  # the registry's units (made in the console or imported) and the config's
                units = set((await s.scalars(select(Unit.id))).all()) | {u.id for u in cfg.units}
            await add_user(writer, args.name, password, args.role, args.unit, args.agency,
                           units, known_agencies=list(cfg.agencies),
                           real_name=args.real_name, badge=args.badge, org_id=args.org or cfg.station.id)
        finally:
            await db.dispose()

    try:
        asyncio.run(go())
    except AuthError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"user {args.name!r} added with role {args.role}")
    return 0


def cmd_db_upgrade(cfg: FirelinkConfig, _args: argparse.Namespace) -> int:
    from dispatch.db import upgrade_blocking

    upgrade_blocking(cfg.database.url)
    print("database schema is at the latest revision")
    return 0


def cmd_audit_verify(cfg: FirelinkConfig, _args: argparse.Namespace) -> int:
    from sqlalchemy import select

    from dispatch.db import Database
    from dispatch.document_content import verify_documents
    from dispatch.document_pdf import verify_pdfs
    from dispatch.hazard_views import HazardViews
    from dispatch.models import ChainHead, RecordEntry, Unit
    from dispatch.records import ChainBreak, Head, verify_chains

    key = cfg.cluster.head_key.get_secret_value().encode() if cfg.cluster.head_key is not None else None
    chains: dict[str, int] = {}

    async def go() -> tuple[int, int, str | int]:
        db = Database(cfg.database.url)
        try:
            async with db.session() as s:
                rows = (await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()
                heads = [Head(h.chain, h.seq, h.hash, h.signature) for h in (await s.scalars(select(ChainHead))).all()]
                counts, broken = verify_chains(rows, heads, key)  # every chain, and each signed head
                chains.update(counts)
                if isinstance(broken, ChainBreak):
                    return len(rows), 0, f"record chain BROKEN at entry {broken.entry_id}: {broken.reason}"
                if broken is not None:
                    return len(rows), 0, f"record chain BROKEN: {broken}"
                # the rows documents are printed from, against the content hashes their record entries carry
                docs, altered = await verify_documents(s)
                if altered is not None:
                    return len(rows), docs, f"document BROKEN at entry {altered.entry_id}: {altered.reason}"
                units = {u.id: u for u in (await s.scalars(select(Unit))).all()}
            # each sealed PDF rendered again, against the SHA-256 recorded when it was sealed
            pdfs, differs = await verify_pdfs(HazardViews(db, cfg, units))
            problem = None if differs is None else f"PDF BROKEN at entry {differs.entry_id}: {differs.reason}"
            return len(rows), docs, problem if problem else pdfs
        finally:
            await db.dispose()

    count, docs, outcome = asyncio.run(go())
    if isinstance(outcome, str):
        print(outcome)
        return 1
    several = f" in {len(chains)} chains with signed heads ({', '.join(sorted(chains))})" if set(chains) - {"main"} \
        else ""
    print(f"record chain intact: {count} entries{several}; {docs} documents match their recorded content; "
          f"{outcome} sealed PDFs match their recorded SHA-256")
    return 0


def add_commands(sub: Any) -> None:
    """The core's commands: press, user add, db upgrade, audit verify (each names its handler)."""
    press = sub.add_parser("press", help="press a unit's one-key alarm over MQTT (drills, demos, tests)")
    press.add_argument("unit_id")
    press.add_argument("--kind", default="one_key", choices=alarm_kinds.DEVICE_IDS)
    press.add_argument("--device-id", help="device id sent with the alarm (default: UNIT_ID-cli, so the record "
                       "shows the alarm came from this command, not from a configured button)")
    press.add_argument("--note")
    press.add_argument("--alarm-id", help="fixed alarm id (default: random); repeats are de-duplicated")
    press.set_defaults(handler=cmd_press)
    user = sub.add_parser("user", help="manage users").add_subparsers(dest="user_command", required=True)
    add = user.add_parser("add", help="add a user")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=list(ROLES))
    add.add_argument("--password", help="prompted when omitted")
    add.add_argument("--unit", help="unit id (role unit)")
    add.add_argument("--agency", help="key of a configured agency, e.g. fire (role agency)")
    add.add_argument("--real-name", default="", help="real name (姓名) printed on documents instead of the login name")
    add.add_argument("--badge", default="", help="badge number (警号) printed with the real name")
    add.add_argument("--org", help="organisation the user works for: a station, brigade or the city "
                     "(config organisations; default: station.id); it sees that subtree's work")
    add.set_defaults(handler=cmd_user_add)
    db = sub.add_parser("db", help="database").add_subparsers(dest="db_command", required=True)
    db.add_parser("upgrade", help="apply Alembic migrations").set_defaults(handler=cmd_db_upgrade)
    audit = sub.add_parser("audit", help="record integrity").add_subparsers(dest="audit_command", required=True)
    audit.add_parser("verify", help="verify the hash chain of the record and the documents' source rows") \
        .set_defaults(handler=cmd_audit_verify)
