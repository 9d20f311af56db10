"""Opening browser pages for the tests: one cookie jar per page, uncaught JavaScript errors recorded."""

from __future__ import annotations

import asyncio
import re
from contextlib import suppress
from typing import Any

from playwright.async_api import Browser, BrowserContext, Error, Page, Route

PASSWORDS = {"admin": "admin-pw", "officer": "officer-pw", "school": "school-pw", "hotel": "hotel-pw",
             "brigade": "brigade-pw", "medic": "medic-pw", "assessor": "assessor-pw"}


class Pages:
    """Opens pages (each in its own cookie jar) and records their uncaught JavaScript errors."""

    def __init__(self, browser: Browser, base: str) -> None:
        self.browser = browser
        self.base = base
        self.errors: list[str] = []
        self.contexts: list[BrowserContext] = []

    async def new(self, *, mobile: bool = False, width: int = 1600, height: int = 900) -> Page:
        if mobile:
            ctx = await self.browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                                 is_mobile=True, has_touch=True, locale="zh-CN")
        else:
            ctx = await self.browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
        self.contexts.append(ctx)
        page = await ctx.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        return page

    async def login(self, username: str, *, path: str = "/login.html", **kwargs: Any) -> Page:
        page = await self.new(**kwargs)
        await page.goto(self.base + path)
        await page.fill("#username", username)
        await page.fill("#password", PASSWORDS.get(username, f"{username}-pw"))
        await page.click("#login-submit")
        await page.wait_for_function("() => !location.pathname.startsWith('/login')")
        return page

    async def close(self) -> None:
        for ctx in self.contexts:
            await ctx.close()


class HeldRequests:
    """Requests the page makes to one URL, held until `release()`: the page's data not in yet, so a test can act
    first (the first click after a load must never be lost) and then let the data come."""

    def __init__(self) -> None:
        self._seen = asyncio.Event()
        self._go = asyncio.Event()

    async def _hold(self, route: Route) -> None:
        self._seen.set()
        await self._go.wait()
        with suppress(Error):  # the page may be gone by then (a logout, a reload)
            await route.continue_()

    async def arrived(self, timeout: float = 10) -> None:
        """Waits until the page has asked (and is waiting)."""
        await asyncio.wait_for(self._seen.wait(), timeout)

    def release(self) -> None:
        self._go.set()


async def hold_requests(page: Page, url: str | re.Pattern[str]) -> HeldRequests:
    held = HeldRequests()
    await page.route(url, held._hold)
    return held
