"""Every page's top bar in Chromium: 退出 tapped while the page still waits for GET /api/me (held here) logs out all
the same."""

from __future__ import annotations

import asyncio
import re
from contextlib import suppress

import pytest
from playwright.async_api import Error, Route, expect

from tests.browser.pages import Pages
from tests.support import RunningApp

# (user, page, what shows the page is settled: its header filled in)
PAGES = [
    ("officer", "/", "#ws-state[data-online='1']"),
    ("officer", "/video.html", "#ws-state[data-online='1']"),
    ("officer", "/hazards.html", "#ws-state[data-online='1']"),
    ("officer", "/triage.html", "#ws-state[data-online='1']"),
    ("officer", "/units.html", "#count:not(:empty)"),
    ("officer", "/assessor.html", "#headline .stat"),
    ("officer", "/inspect.html", "#found li"),
    ("brigade", "/agency.html", "#ws-state[data-online='1']"),
    ("school", "/unit.html", "#ws-state[data-online='1']"),
]
IDS = [path.strip("/").removesuffix(".html") or "console" for _, path, _ in PAGES]


@pytest.mark.parametrize(("user", "path", "settled"), PAGES, ids=IDS)
async def test_logout_tapped_before_the_page_has_its_data_logs_out(pages: Pages, app: RunningApp,
                                                                  user: str, path: str, settled: str) -> None:
    """The first click after a load is never lost: 退出 works before the page knows who is logged in."""
    page = await pages.login(user)
    held = asyncio.Event()
    release = asyncio.Event()

    async def hold(route: Route) -> None:
        held.set()
        await release.wait()
        with suppress(Error):  # the page may be gone by then
            await route.continue_()

    await page.route("**/api/me", hold)
    await page.goto("about:blank")  # (a page already there would only change its hash)
    await page.goto(app.url + path)
    await asyncio.wait_for(held.wait(), 10)
    await page.click("#logout")
    await expect(page).to_have_url(re.compile(r"/login\.html"))
    release.set()
    resp = await page.request.get(app.url + "/api/me")
    assert resp.status == 401  # logged out on the server too
