"""The login page tells a locked-out user when to try again (in Chinese by default, English on the toggle)."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

from playwright.async_api import Browser, expect

from tests.browser.pages import Pages
from tests.support import RunningApp


async def test_locked_account_sees_when_to_retry(
        browser: Browser, app_factory: Callable[..., AbstractAsyncContextManager[RunningApp]]) -> None:
    throttle = {"account_free_failures": 2, "base_lock_s": 600, "max_lock_s": 600}
    async with app_factory(console={"login_throttle": throttle}) as app:
        pages = Pages(browser, app.url)
        try:
            page = await pages.new()
            await page.goto(app.url + "/login.html")
            await page.fill("#username", "officer")
            for _ in range(2):
                await page.fill("#password", "wrong")
                await page.click("#login-submit")
                await expect(page.locator("#login-error")).to_have_text("用户名或密码错误")
                await expect(page.locator("#login-submit")).to_be_enabled()
            await page.fill("#password", "officer-pw")  # the right one, while locked
            await page.click("#login-submit")
            await expect(page.locator("#login-error")).to_have_text(
                re.compile(r"^登录失败次数过多，请 (600|59\d) 秒后再试$"))
            assert "/login.html" in page.url
            await page.click("#lang")
            await page.click("#login-submit")
            await expect(page.locator("#login-error")).to_have_text(
                re.compile(r"^Too many failed logins; try again in (600|59\d) s$"))
        finally:
            await pages.close()
        assert not pages.errors, pages.errors
