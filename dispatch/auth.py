"""Users, roles, password hashing (Argon2id) and server-side login sessions.

Argon2 is slow on purpose (tens of ms of CPU per check). It never runs on the event loop: hashing and
verifying go to a small thread pool (argon2-cffi releases the GIL), at most `HASH_THREADS` at once and at
most `MAX_WAITING` queued, so a flood of logins cannot delay alarms nor pile up memory.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select

from config.schema import BootstrapUser
from dispatch.actor import Actor
from dispatch.db import Database
from dispatch.models import LoginSession, User
from dispatch.writer import Writer
from ingest.contract import utcnow

# assistant: a village/community fire assistant (村级消防员, 网格员): files reports, sees only its own
ROLES = ("admin", "duty_officer", "unit", "agency", "assessor", "assistant")
BADGE_PATTERN = r"^[0-9A-Za-z]{4,16}$"  # 警号: digits (often 6), some forces prefix letters
_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as one with a wrong password.
_DUMMY_HASH = _hasher.hash("firelink-timing-equaliser")


# One thread per two cores (one on a 2-core box): the other core stays free for the alarm path.
HASH_THREADS = max(1, min(4, (os.cpu_count() or 2) // 2))
MAX_WAITING = 64
_pool = ThreadPoolExecutor(max_workers=HASH_THREADS, thread_name_prefix="argon2")
_waiting = 0
T = TypeVar("T")


class AuthError(Exception):
    """Wrong credentials or invalid user definition."""


class AuthBusy(Exception):
    """Too many password checks queued: try again shortly."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    actor: Actor
    user_id: int
    csrf_token: str


def hash_password(password: str) -> str:
    """Blocking (CLI, tests); on the event loop use `hash_password_async`."""
    return _hasher.hash(password)


def _verify_sync(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def _in_pool(fn: Callable[..., T], *args: str) -> T:
    global _waiting
    if _waiting >= MAX_WAITING:
        raise AuthBusy("too many logins in progress")
    _waiting += 1
    try:
        return await asyncio.get_running_loop().run_in_executor(_pool, fn, *args)
    finally:
        _waiting -= 1


async def hash_password_async(password: str) -> str:
    return await _in_pool(hash_password, password)


async def verify_password(password_hash: str, password: str) -> bool:
    """Whether `password` matches `password_hash`, checked in the hashing pool (never on the loop)."""
    return await _in_pool(_verify_sync, password_hash, password)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def actor_of(user: User) -> Actor:
    return Actor(user.username, user.role, unit_id=user.unit_id, agency=user.agency, real_name=user.real_name,
                 badge=user.badge, org_id=user.org_id)


def validate_identity(real_name: str, badge: str) -> None:
    """Real name (姓名) and badge number (警号) as printed on documents: bad input is refused, nothing stored."""
    if len(real_name) > 64 or real_name != real_name.strip() or any(not c.isprintable() for c in real_name):
        raise AuthError("real name must be at most 64 printable characters, without surrounding spaces")
    if badge and not re.fullmatch(BADGE_PATTERN, badge):
        raise AuthError("badge number must be 4–16 letters or digits")
    if badge and not real_name:
        raise AuthError("a badge number needs the real name it belongs to")


def validate_user(role: str, unit_id: str | None, agency: str | None, known_units: Collection[str],
                  known_agencies: Collection[str] = ()) -> None:
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    if role == "unit" and unit_id not in known_units:
        raise AuthError("role unit needs --unit naming a configured unit")
    if role == "agency" and agency not in known_agencies:
        raise AuthError(f"role agency needs --agency naming a configured agency "
                        f"({', '.join(known_agencies) or 'none configured'})")


async def add_user(writer: Writer, username: str, password: str | None, role: str, unit_id: str | None = None,
                   agency: str | None = None, known_units: Collection[str] = (),
                   password_hash: str | None = None, known_agencies: Collection[str] = (), *,
                   real_name: str = "", badge: str = "", org_id: str | None = None) -> User:
    validate_user(role, unit_id, agency, known_units, known_agencies)
    validate_identity(real_name, badge)
    if not username or len(username) > 64:
        raise AuthError("username must be 1–64 characters")
    if password_hash is None:
        if password is None or len(password) < 4:
            raise AuthError("password must have at least 4 characters")
        password_hash = await hash_password_async(password)
    async with writer.tx() as tx:
        s = tx.session
        if await s.scalar(select(User.id).where(User.username == username)) is not None:
            raise AuthError(f"user {username!r} already exists")
        user = User(username=username, password_hash=password_hash, role=role,
                    unit_id=unit_id if role == "unit" else None, agency=agency if role == "agency" else None,
                    real_name=real_name, badge=badge, org_id=org_id, created_at=utcnow())
        s.add(user)
    return user


async def ensure_users(writer: Writer, users: list[BootstrapUser], known_units: Collection[str],
                       known_agencies: Collection[str] = (), default_org: str | None = None) -> list[str]:
    """Creates configured users that do not exist yet; returns the names created."""
    created = []
    async with writer.db.session() as s:
        existing = set((await s.scalars(select(User.username))).all())
    for u in users:
        if u.username not in existing:
            plain = u.password.get_secret_value() if u.password is not None else None
            await add_user(writer, u.username, plain, u.role, u.unit_id, u.agency, known_units, u.password_hash,
                           known_agencies, real_name=u.real_name, badge=u.badge, org_id=u.org or default_org)
            created.append(u.username)
    return created


async def ensure_first_admin(writer: Writer) -> tuple[str, str] | None:
    """When no admin exists, creates one with a random password and returns (username, password)."""
    async with writer.db.session() as s:
        if await s.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None:
            return None
        taken = set((await s.scalars(select(User.username))).all())
    name = "admin" if "admin" not in taken else f"admin-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    await add_user(writer, name, password, "admin")
    return name, password


async def login(writer: Writer, username: str, password: str, lifetime: timedelta, now: datetime,
                remote: str | None = None) -> tuple[str, SessionInfo]:
    """Returns (cookie token, session); the session row and the `user.login` record entry are one transaction.
    The database keeps only the token's hash.

    Raises AuthError for wrong credentials, AuthBusy when too many checks are queued.
    """
    async with writer.db.session() as s:
        user = await s.scalar(select(User).where(User.username == username))
    # no database connection (and not the writer) is held while the password is checked
    if not await verify_password(user.password_hash if user else _DUMMY_HASH, password) or user is None:
        raise AuthError("wrong username or password")
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    who = actor_of(user)
    async with writer.tx() as tx:
        await tx.session.execute(delete(LoginSession).where(LoginSession.expires_at < now))
        tx.session.add(LoginSession(token_hash=_token_hash(token), user_id=user.id, csrf_token=csrf, created_at=now,
                                    expires_at=now + lifetime))
        writer.record(tx, "user.login", who, now, {"remote": remote})
    return token, SessionInfo(who, user.id, csrf)


async def session_for(db: Database, token: str, now: datetime | None = None) -> SessionInfo | None:
    async with db.session() as s:
        row = await s.execute(select(LoginSession, User).join(User, User.id == LoginSession.user_id)
                              .where(LoginSession.token_hash == _token_hash(token)))
        found = row.first()
    if found is None:
        return None
    sess, user = found
    if sess.expires_at < (now or utcnow()):
        return None
    return SessionInfo(actor_of(user), user.id, sess.csrf_token)


async def logout(writer: Writer, token: str, who: Actor, now: datetime) -> None:
    """Ends the session and records `user.logout`, in one transaction."""
    async with writer.tx() as tx:
        await tx.session.execute(delete(LoginSession).where(LoginSession.token_hash == _token_hash(token)))
        writer.record(tx, "user.logout", who, now)
