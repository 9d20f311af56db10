import pytest
from tests.browser.test_alerting import PROBE, strict, strict_browser  # noqa: F401
from tests.browser.pages import PASSWORDS
from tests.support import Api


@pytest.mark.parametrize("mobile", [True, False])
async def test_dbg(strict, app, mobile):  # noqa: F811
    out = []
    for i in range(8):
        api = Api(strict.base)
        await api.login("brigade", PASSWORDS["brigade"])
        cookies = [{"name": c.key, "value": c.value, "url": strict.base} for c in api.http.cookie_jar]
        await api.close()
        page = await strict.new(mobile=mobile)
        await page.context.add_init_script(PROBE)
        await page.context.add_cookies(cookies)
        await page.goto(strict.base + "/agency.html")
        await page.wait_for_function("() => document.body.dataset.sound")
        await page.wait_for_timeout(300)
        out.append(await page.evaluate("[document.body.dataset.sound, __audio.contexts.map(c => c.state), navigator.userActivation.hasBeenActive]"))
    print("DBG", mobile, out)
