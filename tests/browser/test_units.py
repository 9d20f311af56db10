"""The unit registry page in Chromium: an officer registers a unit through the form — the type from the two-level
taxonomy, the position first picked on the offline map, then taken from the phone's GPS — finds it by search, sees
its history; an import with a bad row shows that row and imports nothing; a file chosen before the page has its
data is imported all the same; an assessor only reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from playwright.async_api import Page, expect

from dispatch.credit_code import make as credit_code
from tests.browser.pages import Pages, hold_requests
from tests.support import Api, RunningApp

GPS = {"latitude": 24.829512, "longitude": 108.261234, "accuracy": 8}


async def test_officer_registers_a_unit_with_map_and_gps_and_finds_it(
        pages: Pages, app: RunningApp, shot: Callable[[Page, str], Awaitable[None]]) -> None:
    page = await pages.login("officer", path="/login.html?next=/units.html")
    await expect(page).to_have_url(f"{app.url}/units.html")
    await expect(page.locator("#un-list .hz-item")).to_have_count(2)  # the config's school and hotel
    await expect(page.locator("#count")).to_have_text("共 2 个单位")

    await page.click("#new-btn")
    await expect(page.locator("#unit-form")).to_be_visible()
    await page.fill("#u-name", "城北星空网吧")
    code = credit_code("91451226MA5KXY001")
    await page.fill("#u-credit", code.lower())  # typed in lower case: stored upper case
    await page.fill("#u-address", "城北路 120 号")
    await page.select_option("#u-class", "crowded")
    await page.select_option("#u-type", "internet_cafe")
    await page.fill("#u-contact", "覃老板")
    await page.fill("#u-contact-phone", "13800000077")
    await page.fill("#u-floors", "2")
    await page.check("#u-facilities input[value=extinguisher]")
    await page.check("#u-facilities input[value=fire_exit]")

    box = await page.locator("#u-map").bounding_box()
    assert box is not None
    await page.mouse.click(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.4)  # picked on the map
    await expect(page.locator("#u-lat")).not_to_have_value("")
    picked = float(await page.input_value("#u-lat")), float(await page.input_value("#u-lon"))
    assert -90 <= picked[0] <= 90 and -180 <= picked[1] <= 180
    await expect(page.locator("#u-map .un-pick")).to_have_count(1)
    await shot(page, "units-form-map")

    await page.context.grant_permissions(["geolocation"], origin=app.url)
    await page.context.set_geolocation(GPS)
    await page.click("#u-gps")  # then from the phone's GPS
    await expect(page.locator("#u-lat")).to_have_value(f"{GPS['latitude']:.6f}")
    await expect(page.locator("#u-lon")).to_have_value(f"{GPS['longitude']:.6f}")
    await expect(page.locator("#u-gps-out")).to_contain_text("已获取定位")
    await page.click("#u-save")

    await expect(page.locator("#unit-name")).to_contain_text("城北星空网吧")
    await expect(page.locator("#history li[data-action='unit.created']")).to_have_count(1)
    unit_id = page.url.split("#", 1)[1]

    await page.fill("#q", "星空")
    await page.click("#search-btn")
    await expect(page.locator("#un-list .hz-item")).to_have_count(1)
    await expect(page.locator("#un-list .hz-item")).to_have_attribute("data-id", unit_id)
    await page.fill("#q", code[-6:].lower())  # part of the credit code finds it too
    await page.click("#search-btn")
    await expect(page.locator(f"#un-list .hz-item[data-id='{unit_id}']")).to_have_count(1)
    await shot(page, "units-found")

    officer = Api(app.url)
    await officer.login("officer", "officer-pw")
    stored = await officer.get(f"/api/units/{unit_id}")
    await officer.close()
    assert (stored["lat"], stored["lon"]) == (GPS["latitude"], GPS["longitude"])
    assert stored["credit_code"] == code and stored["unit_type"] == "internet_cafe"
    assert stored["facilities"] == ["extinguisher", "fire_exit"] and stored["floors"] == 2

    # an edit shows up in the history with what changed
    await page.click(f"#un-list .hz-item[data-id='{unit_id}']")
    await page.click("#edit-btn")
    await page.fill("#u-floors", "3")
    await page.click("#u-save")
    await expect(page.locator("#history li[data-action='unit.updated']")).to_contain_text("2 → 3")


async def test_import_with_a_bad_row_lists_it_and_an_assessor_only_reads(pages: Pages, app: RunningApp,
                                                                         tmp_path: object) -> None:
    from pathlib import Path

    page = await pages.login("officer", path="/login.html?next=/units.html")
    csv = Path(str(tmp_path)) / "units.csv"
    csv.write_text("单位名称,地址,单位类型\n甲商店,人民路1号,小商店\n乙网吧,人民路2号,太空港\n", encoding="utf-8")
    await page.set_input_files("#import-file", str(csv))
    await expect(page.locator("#import-errors tbody tr")).to_have_count(1)
    await expect(page.locator("#import-errors tbody tr")).to_have_attribute("data-row", "3")
    await expect(page.locator("#import-errors")).to_contain_text("unknown unit type")
    await expect(page.locator("#count")).to_have_text("共 2 个单位")  # nothing imported
    csv.write_text("单位名称,地址,单位类型\n甲商店,人民路1号,小商店\n乙网吧,人民路2号,网吧\n", encoding="utf-8")
    await page.set_input_files("#import-file", str(csv))
    await expect(page.locator("#count")).to_have_text("共 4 个单位")

    reader = await pages.login("assessor", path="/login.html?next=/units.html%23school-1")
    await expect(reader.locator("#unit-name")).to_contain_text("第一小学")
    await expect(reader.locator("#new-btn")).to_be_hidden()
    await expect(reader.locator("#edit-btn")).to_have_count(0)
    await expect(reader.locator("#qr-link")).to_have_attribute("href", "/api/units/school-1/qr.pdf")


async def test_a_file_chosen_before_the_page_has_its_data_is_imported_all_the_same(pages: Pages, app: RunningApp,
                                                                                  tmp_path: Path) -> None:
    """The first action after a load is never lost: the import's file is chosen while the page still waits for its
    data (held here), and is imported once the data is in."""
    page = await pages.login("officer")
    held = await hold_requests(page, "**/api/units/options")
    await page.goto(f"{app.url}/units.html")
    await held.arrived()
    csv = tmp_path / "units.csv"
    csv.write_text("单位名称,地址,单位类型\n丙商店,人民路3号,小商店\n", encoding="utf-8")
    await page.set_input_files("#import-file", str(csv))
    held.release()
    await expect(page.locator("#count")).to_have_text("共 3 个单位")
    await expect(page.locator("#un-list")).to_contain_text("丙商店")
