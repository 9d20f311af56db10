"""Headless Chromium (Debian's /usr/bin/chromium via Playwright) against the real app in-process.

Every test gets a fresh app (real Mosquitto, SQLite, loopback webhook receiver) and a fresh
browser. Pages are watched for uncaught JavaScript errors, which fail the test. Screenshots for reviewers
(idle overview, alarm during video patrol, unit page after close, ...) are written to var/test-shots/
(git-ignored; FIRELINK_SHOTS_DIR overrides, FIRELINK_SHOTS=0 turns them off) — see `shot`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.browser.pages import Pages
from tests.support import Broker, RunningApp, WebhookReceiver, base_config, running_app

CHROMIUM = os.environ.get("FIRELINK_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
SHOTS = Path(os.environ.get("FIRELINK_SHOTS_DIR", Path(__file__).resolve().parents[2] / "var" / "test-shots"))

expect.set_options(timeout=10_000)


def _chromium_present() -> bool:
    return bool(shutil.which(CHROMIUM)) or Path(CHROMIUM).exists()


async def launch(args: list[str]) -> AsyncIterator[Browser]:
    """Debian's Chromium with these flags, closed afterwards (the body of the browser fixtures)."""
    if not _chromium_present():
        pytest.skip(f"Chromium not found at {CHROMIUM} (install Debian's chromium: make sysdeps)")
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async for b in launch(ARGS):
        yield b


@pytest.fixture
def app_factory(broker: Broker, sqlite_url: str, receiver: WebhookReceiver
                ) -> Callable[..., AbstractAsyncContextManager[RunningApp]]:
    def make(**overrides: Any) -> AbstractAsyncContextManager[RunningApp]:
        return running_app(base_config(sqlite_url, broker, webhook_url=receiver.url, **overrides))
    return make


@pytest.fixture
async def app(app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]]) -> AsyncIterator[RunningApp]:
    async with app_factory() as running:
        yield running


async def watched_pages(browser: Browser, app: RunningApp) -> AsyncIterator[Pages]:
    """Pages on the app in this browser; uncaught JavaScript errors fail the test (the body of the page fixtures)."""
    p = Pages(browser, app.url)
    yield p
    await p.close()
    assert not p.errors, f"uncaught JavaScript errors: {p.errors}"


@pytest.fixture
async def pages(browser: Browser, app: RunningApp) -> AsyncIterator[Pages]:
    async for p in watched_pages(browser, app):
        yield p


@pytest.fixture
def shot() -> Callable[[Page, str], Awaitable[None]]:
    enabled = os.environ.get("FIRELINK_SHOTS", "1") != "0"
    if enabled:
        SHOTS.mkdir(parents=True, exist_ok=True)

    async def take(page: Page, name: str) -> None:
        if enabled:
            await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=False)
    return take
