"""Every page's top bar in Chromium: on a phone (390 px), a small laptop or tablet (800, 1024 px) and a laptop
(1366 px) every control of it is on the screen (none runs past the right edge); where the console's bar wraps onto
more rows, a change of its labels (silenced, connection lost, 开始值班 clicked) moves nothing; and 退出 tapped while
the page still waits for GET /api/me (held here) logs out all the same."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser.pages import PASSWORDS, Pages, hold_requests
from tests.support import Api, RunningApp

Shot = Callable[[Page, str], Awaitable[None]]

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

# The top bar's controls and status marks, each with where it lies (those not shown are left out).
HEADER_BOXES = """(bar) => [...bar.querySelectorAll('a, button, select, input, .who, .clock, .ws-state, .sound-state')]
  .filter((e) => e.getClientRects().length)
  .map((e) => { const r = e.getBoundingClientRect();
    return { what: e.id || e.className || e.tagName, left: r.left, right: r.right }; })"""


@pytest.mark.parametrize("screen", [390, 800, 1024, 1366])
@pytest.mark.parametrize(("user", "path", "settled"), PAGES, ids=IDS)
async def test_every_header_control_is_on_the_screen(pages: Pages, app: RunningApp, shot: Shot,
                                                     user: str, path: str, settled: str, screen: int) -> None:
    """A phone (390 px), a small laptop (800 px), a tablet held sideways (1024 px), a laptop (1366 px)."""
    page = await (pages.login(user, mobile=True) if screen == 390 else pages.login(user, width=screen, height=768))
    await page.goto(app.url + path)
    await expect(page.locator(settled).first).to_be_attached()
    await shot(page, f"header-{screen}-{IDS[PAGES.index((user, path, settled))]}")
    width = await page.evaluate("() => document.documentElement.clientWidth")
    assert width == screen
    boxes = await page.locator("header.topbar").evaluate(HEADER_BOXES)
    assert any(b["what"] == "logout" for b in boxes), boxes
    off = [b for b in boxes if b["left"] < 0 or b["right"] > width + 0.5]
    assert not off, f"past the screen's edge ({width} px): {off}"


# Where every control of the top bar lies, the bar's height and where the page below it starts.
LAYOUT = """() => { const bar = document.querySelector('header.topbar');
  const box = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  return { bar: box(bar), unit: box(document.getElementById('d-unit')),
    controls: [...bar.querySelectorAll('a, button, .who, .clock, .ws-state')].map((e) => [e.id, box(e)]) }; }"""


@pytest.mark.parametrize("screen", [800, 1024, 1366])
async def test_console_header_stays_put_when_its_labels_change(pages: Pages, app: RunningApp, shot: Shot,
                                                               screen: int) -> None:
    """Below 1600 px the console's top bar wraps onto more rows. What changes its text while the officer works — the
    sound indicator (静音: 已静音至 …), the connection label (连接中断，正在重连…), 开始值班 once clicked — moves
    no control and not the page below (a bar that moved under the pointer once swallowed the first click on 签收)."""
    officer = Api(app.url)
    await officer.login("officer", PASSWORDS["officer"])
    try:
        await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
    finally:
        await officer.close()
    sockets: list[WebSocketRoute] = []
    never = asyncio.Event()

    async def live(ws: WebSocketRoute) -> None:  # the first connection goes through; once lost, it stays lost
        sockets.append(ws)
        if len(sockets) > 1:
            await never.wait()
        ws.connect_to_server()

    page = await pages.new(width=screen, height=768)
    await page.route_web_socket(re.compile(r"/ws$"), live)
    await page.goto(app.url + "/login.html")
    await page.fill("#username", "officer")
    await page.fill("#password", PASSWORDS["officer"])
    await page.click("#login-submit")
    await expect(page.locator("#d-unit")).to_have_text("第一小学")
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "1")
    await expect(page.locator("body")).to_have_attribute("data-alerts-live", "1")
    where = await page.evaluate(LAYOUT)

    await page.click("#mute")
    await expect(page.locator("#sound-state")).to_have_attribute("data-state", "silenced")
    assert await page.evaluate(LAYOUT) == where, "silencing moved the bar"
    if await page.locator("#start-duty").is_visible():
        await page.click("#start-duty")
        await expect(page.locator("#start-duty")).to_be_hidden()
        assert await page.evaluate(LAYOUT) == where, "开始值班 clicked moved the bar"
    await sockets[0].close()
    await expect(page.locator("#ws-state")).to_have_attribute("data-online", "0")
    await shot(page, f"header-{screen}-console-silenced-offline")
    assert await page.evaluate(LAYOUT) == where, "the connection's loss moved the bar"


@pytest.mark.parametrize(("user", "path", "settled"), PAGES, ids=IDS)
async def test_logout_tapped_before_the_page_has_its_data_logs_out(pages: Pages, app: RunningApp,
                                                                  user: str, path: str, settled: str) -> None:
    """The first click after a load is never lost: 退出 works before the page knows who is logged in."""
    page = await pages.login(user)
    held = await hold_requests(page, "**/api/me")
    await page.goto("about:blank")  # (a page already there would only change its hash)
    await page.goto(app.url + path)
    await held.arrived()
    await page.click("#logout")
    await expect(page).to_have_url(re.compile(r"/login\.html"))
    held.release()
    resp = await page.request.get(app.url + "/api/me")
    assert resp.status == 401  # logged out on the server too
