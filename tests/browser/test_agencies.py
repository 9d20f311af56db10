"""A third agency (gas) added by configuration only: the console grows its dispatch button and status row, the gas
company's page shows and accepts its dispatch; labels come from the server's registries (GET /api/me)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager

import pytest
from playwright.async_api import Page, expect

from tests.browser.pages import PASSWORDS, Pages
from tests.support import WEBHOOK_SECRET, Api, RunningApp, WebhookReceiver, base_config

Shot = Callable[[Page, str], Awaitable[None]]


@pytest.fixture
async def app(app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]], receiver: WebhookReceiver,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[RunningApp]:
    monkeypatch.setitem(PASSWORDS, "gasco", "gasco-pw")
    users = [u.model_dump(exclude_none=True) for u in base_config("sqlite+aiosqlite://", None).users]
    users.append({"username": "gasco", "password": "gasco-pw", "role": "agency", "agency": "gas"})
    gas = {"name": "燃气公司抢修中心", "phone": "96777", "label": {"zh": "燃气抢修", "en": "Gas company"},
           "webhooks": [{"url": receiver.url, "secret": WEBHOOK_SECRET}]}
    async with app_factory(agencies={"gas": gas}, users=users) as running:
        yield running


async def test_console_dispatches_to_a_configured_third_agency(
        pages: Pages, app: RunningApp, receiver: WebhookReceiver, shot: Shot) -> None:
    page = await pages.login("officer")
    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    try:
        await officer.post("/api/units/hotel-1/alarm", {"kind": "gas"})
        await expect(page.locator("#queue .queue-item").first).to_contain_text("燃气报警")  # the kinds' registry
        await expect(page.locator("[data-action=dispatch_both]")).to_contain_text("联动 119+120+96777")
        for agency, text in (("fire", "仅 119"), ("medical", "仅 120"), ("gas", "仅 96777")):
            await expect(page.locator(f"[data-action=dispatch-{agency}]")).to_have_text(text)
        await page.click("[data-action=dispatch-gas]")
        row = page.locator("#d-dispatch [data-agency=gas]")
        await expect(row).to_have_attribute("data-status", "delivered")
        await expect(row.locator(".dr-agency")).to_have_text("燃气抢修")
        await expect(row.locator("[data-channel=webhook]")).to_have_attribute("data-status", "delivered")
        await expect(page.locator("#d-dispatch [data-agency=fire]")).to_have_attribute("data-status", "none")
        await expect(page.locator("[data-action=dispatch-gas]")).to_be_disabled()
        await expect(page.locator("[data-action=dispatch-fire]")).to_be_enabled()
        await expect(page.locator("#detail-body")).not_to_contain_text("null")
        await shot(page, "console-third-agency")
        await receiver.wait_for(1)
        assert receiver.received[0].json["agency"] == "gas" and receiver.signature_ok == [True]

        await page.click("#lang")
        await expect(page.locator("[data-action=dispatch-gas]")).to_have_text("96777 only")
        await expect(row.locator(".dr-agency")).to_have_text("Gas company")
        await expect(page.locator("#d-kind")).to_have_text("Gas alarm")

        gas_page = await pages.login("gasco")
        assert gas_page.url.endswith("/agency.html")
        await expect(gas_page.locator("#agency-name")).to_have_text("燃气公司抢修中心")
        card = gas_page.locator("#dispatches .dcard")
        await expect(card).to_have_count(1)
        await expect(card).to_contain_text("环江宾馆")
        await card.locator("[data-action=accept]").click()
        await expect(card).to_have_attribute("data-status", "acknowledged")
        await expect(row).to_have_attribute("data-status", "acknowledged")  # live on the officer's console
    finally:
        await officer.close()
