"""Users, roles, password hashing (Argon2id) and server-side login sessions."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select

from config.schema import BootstrapUser
from dispatch.db import Database
from dispatch.inputs import Actor, utcnow
from dispatch.models import LoginSession, User

ROLES = ("admin", "duty_officer", "unit", "agency", "assessor")
AGENCIES = ("fire", "medical")
_hasher = PasswordHasher()
# Verifying against this keeps a login for an unknown user as slow as one with a wrong password.
_DUMMY_HASH = _hasher.hash("firelink-timing-equaliser")


class AuthError(Exception):
    """Wrong credentials or invalid user definition."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    actor: Actor
    user_id: int
    csrf_token: str


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def actor_of(user: User) -> Actor:
    return Actor(user.username, user.role, unit_id=user.unit_id, agency=user.agency)


def validate_user(role: str, unit_id: str | None, agency: str | None, known_units: set[str]) -> None:
    if role not in ROLES:
        raise AuthError(f"role must be one of {', '.join(ROLES)}")
    if role == "unit" and unit_id not in known_units:
        raise AuthError("role unit needs --unit naming a configured unit")
    if role == "agency" and agency not in AGENCIES:
        raise AuthError("role agency needs --agency fire or medical")


async def add_user(db: Database, username: str, password: str | None, role: str, unit_id: str | None = None,
                   agency: str | None = None, known_units: set[str] | None = None,
                   password_hash: str | None = None) -> User:
    validate_user(role, unit_id, agency, known_units or set())
    if not username or len(username) > 64:
        raise AuthError("username must be 1–64 characters")
    if password_hash is None:
        if password is None or len(password) < 4:
            raise AuthError("password must have at least 4 characters")
        password_hash = hash_password(password)
    async with db.session() as s:
        if await s.scalar(select(User.id).where(User.username == username)) is not None:
            raise AuthError(f"user {username!r} already exists")
        user = User(username=username, password_hash=password_hash, role=role,
                    unit_id=unit_id if role == "unit" else None, agency=agency if role == "agency" else None,
                    created_at=utcnow())
        s.add(user)
        await s.commit()
        return user


async def ensure_users(db: Database, users: list[BootstrapUser], known_units: set[str]) -> list[str]:
    """Creates configured users that do not exist yet; returns the names created."""
    created = []
    async with db.session() as s:
        existing = set((await s.scalars(select(User.username))).all())
    for u in users:
        if u.username not in existing:
            plain = u.password.get_secret_value() if u.password is not None else None
            await add_user(db, u.username, plain, u.role, u.unit_id, u.agency, known_units, u.password_hash)
            created.append(u.username)
    return created


async def ensure_first_admin(db: Database) -> tuple[str, str] | None:
    """When no admin exists, creates one with a random password and returns (username, password)."""
    async with db.session() as s:
        if await s.scalar(select(User.id).where(User.role == "admin").limit(1)) is not None:
            return None
        taken = set((await s.scalars(select(User.username))).all())
    name = "admin" if "admin" not in taken else f"admin-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(12)
    await add_user(db, name, password, "admin")
    return name, password


async def login(db: Database, username: str, password: str, lifetime: timedelta) -> tuple[str, SessionInfo]:
    """Returns (cookie token, session). The database keeps only the token's hash."""
    async with db.session() as s:
        user = await s.scalar(select(User).where(User.username == username))
        try:
            _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            raise AuthError("wrong username or password") from None
        if user is None:
            raise AuthError("wrong username or password")
        now = utcnow()
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        await s.execute(delete(LoginSession).where(LoginSession.expires_at < now))
        s.add(LoginSession(token_hash=_token_hash(token), user_id=user.id, csrf_token=csrf, created_at=now,
                           expires_at=now + lifetime))
        await s.commit()
        return token, SessionInfo(actor_of(user), user.id, csrf)


async def session_for(db: Database, token: str) -> SessionInfo | None:
    async with db.session() as s:
        row = await s.execute(select(LoginSession, User).join(User, User.id == LoginSession.user_id)
                              .where(LoginSession.token_hash == _token_hash(token)))
        found = row.first()
    if found is None:
        return None
    sess, user = found
    if sess.expires_at < utcnow():
        return None
    return SessionInfo(actor_of(user), user.id, sess.csrf_token)


async def logout(db: Database, token: str) -> None:
    async with db.session() as s:
        await s.execute(delete(LoginSession).where(LoginSession.token_hash == _token_hash(token)))
        await s.commit()
