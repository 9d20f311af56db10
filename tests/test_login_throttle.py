"""Logins: throttled per account and per address (growing locks, 429 + Retry-After), checked off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from config.schema import LoginThrottleConfig
from dispatch import auth
from dispatch.login_throttle import LoginThrottle
from tests.support import RunningApp, StepClock, base_config, running_app

T0 = datetime(2026, 11, 23, 8, 0, 0, tzinfo=UTC)


THROTTLE = {"account_free_failures": 5, "address_free_failures": 8, "base_lock_s": 1.0, "max_lock_s": 60.0,
            "forget_after_s": 600.0}


@contextlib.asynccontextmanager
async def throttled_app(db_url: str, **throttle: Any) -> AsyncIterator[tuple[RunningApp, StepClock]]:
    clock = StepClock(T0)
    cfg = base_config(db_url, None, console={"login_throttle": {**THROTTLE, **throttle}})
    async with running_app(cfg, mqtt=False, clock=clock) as running:
        yield running, clock


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[tuple[RunningApp, StepClock]]:
    async with throttled_app(db_url) as running:
        yield running


async def try_login(http: aiohttp.ClientSession, base: str, username: str, password: str,
                    headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    async with http.post(f"{base}/api/login", json={"username": username, "password": password},
                         headers=headers or {}) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_wrong_passwords_lock_the_account_even_for_the_right_one_and_success_resets(
        db_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    async with throttled_app(db_url, address_free_failures=100) as (running, clock), aiohttp.ClientSession() as http:
        for _ in range(5):
            assert (await try_login(http, running.url, "officer", "guess-1234"))[0] == 401
        status, body, headers = await try_login(http, running.url, "officer", "officer-pw")
        assert status == 429 and headers["Retry-After"] == "1" and body["retry_after"] == 1, body
        # other accounts from the same address are not locked yet
        assert (await try_login(http, running.url, "assessor", "assessor-pw"))[0] == 200
        clock.advance(1.5)
        assert (await try_login(http, running.url, "officer", "officer-pw"))[0] == 200  # lock over; resets
        for _ in range(4):
            assert (await try_login(http, running.url, "officer", "guess-5678"))[0] == 401
        assert (await try_login(http, running.url, "officer", "officer-pw"))[0] == 200  # still 4 < 5: counter reset

        # Growing: after the 5th failure 1 s, after the 6th 2 s.
        for _ in range(5):
            await try_login(http, running.url, "OFFICER", "nope")  # user names are throttled case-insensitively
        clock.advance(1.5)
        assert (await try_login(http, running.url, "officer", "nope"))[0] == 401
        status, _, headers = await try_login(http, running.url, "officer", "officer-pw")
        assert status == 429 and headers["Retry-After"] == "2"
    text = caplog.text
    assert "login locked" in text and "refused while locked" in text
    assert "guess-1234" not in text and "officer-pw" not in text and "nope" not in text


async def test_one_address_is_throttled_across_accounts(app: tuple[RunningApp, StepClock]) -> None:
    running, clock = app
    async with aiohttp.ClientSession() as http:
        for i in range(8):  # one guess each at 8 different accounts, from one address
            assert (await try_login(http, running.url, f"user{i}", "x"))[0] == 401
        status, body, headers = await try_login(http, running.url, "assessor", "assessor-pw")
        assert status == 429 and int(headers["Retry-After"]) >= 1, body
        # Another client (as a reverse proxy on this machine reports it) is not affected ...
        proxied = {"X-Forwarded-For": "10.1.2.3"}
        assert (await try_login(http, running.url, "assessor", "assessor-pw", proxied))[0] == 200
        # ... and a successful login does not reset the address it came from.
        clock.advance(1.5)
        assert (await try_login(http, running.url, "assessor", "assessor-pw"))[0] == 200
        assert (await try_login(http, running.url, "user9", "x"))[0] == 401
        assert (await try_login(http, running.url, "assessor", "assessor-pw"))[0] == 429


def test_throttle_grows_caps_and_forgets() -> None:
    now = [0.0]
    t = LoginThrottle(LoginThrottleConfig(account_free_failures=3, address_free_failures=100, base_lock_s=2,
                                          max_lock_s=10, forget_after_s=100), lambda: now[0])
    assert [t.failed("a", "ip") for _ in range(3)] == [0.0, 0.0, 2.0]
    assert t.retry_after("a", "ip") == 2.0 and t.retry_after("b", "ip") == 0.0
    now[0] += 2
    assert t.retry_after("a", "ip") == 0.0
    assert [t.failed("a", "ip") for _ in range(3)] == [4.0, 8.0, 10.0]  # doubles, capped
    now[0] += 10 + 101  # lock over and quiet for longer than forget_after_s
    assert t.retry_after("a", "ip") == 0.0 and t.failed("a", "ip") == 0.0
    small = LoginThrottle(LoginThrottleConfig(account_free_failures=1, address_free_failures=1), lambda: now[0],
                          max_keys=10)
    for i in range(50):
        small.failed(f"u{i}", f"ip{i}")
    assert len(small._keys) <= 10


async def test_password_checks_run_off_the_event_loop_with_bounded_concurrency(
        app: tuple[RunningApp, StepClock], monkeypatch: pytest.MonkeyPatch) -> None:
    """While 10 logins are being checked (held inside Argon2 by a gate), the server answers other requests."""
    running, _ = app
    loop = asyncio.get_running_loop()
    gate = threading.Event()
    first_entered = asyncio.Event()
    lock = threading.Lock()
    inside = [0, 0]  # now, most at once
    real = auth._verify_sync

    def gated(password_hash: str, password: str) -> bool:
        with lock:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
        loop.call_soon_threadsafe(first_entered.set)
        gate.wait(30)
        try:
            return real(password_hash, password)  # the real Argon2 check, after the gate
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(auth, "_verify_sync", gated)
    async with aiohttp.ClientSession() as http:
        logins = [asyncio.create_task(try_login(http, running.url, f"nobody{i}", "wrong")) for i in range(10)]
        await asyncio.wait_for(first_entered.wait(), 10)
        async with http.get(f"{running.url}/healthz") as resp:  # answered while every login is still held
            assert resp.status in (200, 503)
            await resp.read()
        assert not any(t.done() for t in logins)
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(*logins), 60)
    assert [r[0] for r in results] == [401] * 10
    assert inside[1] <= auth.HASH_THREADS


async def test_too_many_queued_checks_are_refused_not_queued(
        app: tuple[RunningApp, StepClock], monkeypatch: pytest.MonkeyPatch) -> None:
    running, _ = app
    gate = threading.Event()
    real = auth._verify_sync

    def gated(password_hash: str, password: str) -> bool:
        gate.wait(30)
        return real(password_hash, password)

    monkeypatch.setattr(auth, "_verify_sync", gated)
    monkeypatch.setattr(auth, "MAX_WAITING", 3)
    hashed = auth.hash_password("pw-1234")
    held = [asyncio.create_task(auth.verify_password(hashed, "pw-1234")) for _ in range(3)]
    await asyncio.sleep(0)  # one loop turn: each task runs up to its wait on the pool (FIFO)
    with pytest.raises(auth.AuthBusy):
        await auth.verify_password(hashed, "pw-1234")
    gate.set()
    assert await asyncio.gather(*held) == [True] * 3

    monkeypatch.setattr(auth, "MAX_WAITING", 0)  # over HTTP: refused with 429, not queued
    async with aiohttp.ClientSession() as http:
        status, body, headers = await try_login(http, running.url, "officer", "officer-pw")
        assert status == 429 and headers["Retry-After"] == "1" and "in progress" in body["error"]
        monkeypatch.setattr(auth, "MAX_WAITING", 64)
        assert (await try_login(http, running.url, "officer", "officer-pw"))[0] == 200


async def test_session_cookie_is_secure_over_https_in_auto_mode(app: tuple[RunningApp, StepClock]) -> None:
    running, _ = app
    assert running.cfg.console.secure_cookies == "auto"
    async with aiohttp.ClientSession() as http:
        _, _, plain = await try_login(http, running.url, "officer", "officer-pw")
        _, _, proxied = await try_login(http, running.url, "officer", "officer-pw", {"X-Forwarded-Proto": "https"})
    assert "Secure" not in plain["Set-Cookie"] and "HttpOnly" in plain["Set-Cookie"]
    assert "Secure" in proxied["Set-Cookie"]
