"""The unit registry over HTTP, on SQLite and PostgreSQL: create, edit (optimistic versions) and retire in the hash
chain; bad input changes nothing; scope by station; import all-or-nothing (CSV and XLSX) with row errors; search;
an alarm from a unit made here; the QR codes' redirect and sheet."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy import func, select

from console.appkeys import DB
from dispatch.credit_code import make as credit_code
from dispatch.models import RecordEntry, Unit
from dispatch.records import verify
from tests.support import Api, RunningApp, RunningClock, _hashed, base_config, config_yaml, run_cli, running_app

TREE = [
    {"id": "city", "name": "河池市公安局", "level": "city"},
    {"id": "brigade", "name": "环江县公安局", "level": "brigade", "parent": "city"},
    {"id": "st-test", "name": "城北派出所", "level": "station", "parent": "brigade"},
    {"id": "st-2", "name": "思恩派出所", "level": "station", "parent": "brigade"},
]
USERS = [
    ("admin", {"role": "admin"}), ("officer", {"role": "duty_officer"}),
    ("officer2", {"role": "duty_officer", "org": "st-2"}), ("chief", {"role": "duty_officer", "org": "brigade"}),
    ("assessor", {"role": "assessor"}), ("school", {"role": "unit", "unit_id": "school-1"}),
    ("brigade", {"role": "agency", "agency": "fire"}),
]
NEW_YEARS_EVE = datetime(2026, 12, 31, 15, 55, tzinfo=UTC)  # 23:55 in China: the app's clock, not today's
CODE_1 = credit_code("91451226MA5K00001")
CODE_2 = credit_code("91451226MA5K00002")


def unit_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "城北网吧", "credit_code": CODE_1, "address": "城北路 99 号", "lat": 24.83, "lon": 108.26,
        "unit_type": "internet_cafe", "contact_name": "覃老板", "contact_phone": "13800000009",
        "safety_manager_name": "韦管理", "safety_manager_phone": "0778-1234567", "floors": 2, "area_m2": 320.5,
        "occupancy": 80, "facilities": ["灭火器", "fire_exit", "emergency_lighting"], "community_officer": "officer"}
    body.update(overrides)
    return body


@pytest.fixture
async def app(db_url: str) -> AsyncIterator[RunningApp]:
    users = [{"username": n, "password_hash": _hashed(f"{n}-pw"), **extra} for n, extra in USERS]
    cfg = base_config(db_url, None, organisations=TREE, users=users)
    async with running_app(cfg, mqtt=False, clock=RunningClock(NEW_YEARS_EVE)) as running:
        yield running


async def login(app: RunningApp, users: dict[str, Api], name: str) -> Api:
    api = Api(app.url)
    users[name] = api
    await api.login(name, f"{name}-pw")
    return api


async def upload(api: Api, path: str, data: bytes, filename: str) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=filename, content_type="application/octet-stream")
    headers = {"X-CSRF-Token": api.csrf or ""}
    async with api.http.post(api.base + path, data=form, headers=headers) as resp:
        return resp.status, await resp.json()


async def counts(app: RunningApp) -> tuple[int, int]:
    async with app.app[DB].session() as s:
        return (await s.scalar(select(func.count(Unit.id))) or 0,
                await s.scalar(select(func.count(RecordEntry.id))) or 0)


async def chain_intact(app: RunningApp) -> bool:
    async with app.app[DB].session() as s:
        return verify((await s.scalars(select(RecordEntry).order_by(RecordEntry.id))).all()) is None


async def test_create_edit_retire_are_in_the_chain_and_stale_edits_conflict(app: RunningApp,
                                                                         users: dict[str, Api]) -> None:
    officer = await login(app, users, "officer")
    status, made = await officer.request("POST", "/api/units", unit_body(id="netbar-1"))
    assert status == 201, made
    assert made["id"] == "netbar-1" and made["version"] == 1 and made["station_id"] == "st-test"
    assert made["category"] == "网吧" and made["unit_class"] == "crowded"
    assert made["facilities"] == ["extinguisher", "emergency_lighting", "fire_exit"]  # names resolved, file order
    assert made["credit_code"] == CODE_1

    status, edited = await officer.request("PUT", "/api/units/netbar-1", {
        "version": 1, "name": "城北星空网吧", "floors": 3, "facilities": ["extinguisher"]})
    assert status == 200, edited
    assert (edited["name"], edited["floors"], edited["version"]) == ("城北星空网吧", 3, 2)
    assert edited["address"] == "城北路 99 号"  # absent fields are kept

    status, stale = await officer.request("PUT", "/api/units/netbar-1", {"version": 1, "name": "旧版本的修改"})
    assert status == 409 and stale["version"] == 2, stale
    assert "changed since" in stale["error"]

    detail = await officer.get("/api/units/netbar-1")
    assert detail["name"] == "城北星空网吧" and detail["cameras"] == [] and detail["devices"] == []
    history = detail["history"]
    assert [e["action"] for e in history] == ["unit.created", "unit.updated"]
    assert history[0]["data"]["fields"]["credit_code"] == CODE_1 and history[0]["actor"] == "officer"
    assert history[1]["data"]["changes"] == {
        "name": {"before": "城北网吧", "after": "城北星空网吧"}, "floors": {"before": 2, "after": 3},
        "facilities": {"before": ["extinguisher", "emergency_lighting", "fire_exit"], "after": ["extinguisher"]}}

    status, retired = await officer.request("POST", "/api/units/netbar-1/retire", {"version": 2, "reason": "停业"})
    assert status == 200 and retired["retired"] and retired["version"] == 3, retired
    assert (await officer.request("POST", "/api/units/netbar-1/retire", {}))[0] == 409
    assert (await officer.request("PUT", "/api/units/netbar-1", {"version": 3, "name": "x"}))[0] == 409
    assert "netbar-1" not in [u["id"] for u in await officer.get("/api/units")]
    listed = await officer.get("/api/units?include_retired=true")
    assert [u["retired"] for u in listed if u["id"] == "netbar-1"] == [True]
    history = (await officer.get("/api/units/netbar-1"))["history"]  # a retired unit keeps its page and history
    assert [e["action"] for e in history] == ["unit.created", "unit.updated", "unit.retired"]
    assert history[-1]["data"]["reason"] == "停业"
    assert history[-1]["at"].startswith("2026-12-31T15:5") and retired["retired_at"] == history[-1]["at"]
    assert await chain_intact(app)


async def test_bad_input_is_a_400_and_changes_nothing(app: RunningApp, users: dict[str, Api]) -> None:
    officer = await login(app, users, "officer")
    await officer.request("POST", "/api/units", unit_body(id="netbar-1"))
    before = await counts(app)
    wrong_check = CODE_2[:17] + ("0" if CODE_2[17] != "0" else "1")
    cases = [
        (unit_body(credit_code=wrong_check, id="x1"), "check character"),
        (unit_body(credit_code="91451226MA5K0000I", id="x2"), "18 characters"),
        (unit_body(credit_code="91451226MA5K0000IX", id="x2"), "not allowed"),
        (unit_body(unit_type="spaceport", id="x3"), "unknown unit type"),
        (unit_body(facilities=["moat"], id="x4"), "unknown facility"),
        (unit_body(lat=24.8, lon=None, id="x5", credit_code=""), "both lat and lon"),
        (unit_body(station_id="brigade", id="x6", credit_code=""), "unknown station"),
        (unit_body(community_officer="school", id="x7", credit_code=""), "not a police officer"),
        (unit_body(id="export"), "reserved"),
    ]
    for body, message in cases:
        status, result = await officer.request("POST", "/api/units", body)
        assert status == 400, (body, status, result)
        assert message in str(result), (message, result)
    status, result = await officer.request("POST", "/api/units", unit_body(id="netbar-2"))  # CODE_1 is taken
    assert status == 409 and "already registered for unit 'netbar-1'" in result["error"], result
    status, result = await officer.request("PUT", "/api/units/netbar-1", {"version": 1, "credit_code": wrong_check})
    assert status == 400 and "check character" in result["error"], result
    assert await counts(app) == before
    assert (await officer.get("/api/units/netbar-1"))["version"] == 1


async def test_officers_see_and_edit_only_their_subtrees_units(app: RunningApp, users: dict[str, Api]) -> None:
    officer = await login(app, users, "officer")
    officer2 = await login(app, users, "officer2")
    chief = await login(app, users, "chief")
    school = await login(app, users, "school")
    agency = await login(app, users, "brigade")
    mine = await officer.request("POST", "/api/units", unit_body(id="north-1"))
    theirs = await officer2.request("POST", "/api/units",
                                    unit_body(id="east-1", credit_code=CODE_2, community_officer=""))
    assert mine[0] == 201 and theirs[0] == 201 and theirs[1]["station_id"] == "st-2"  # each officer's own station

    assert {u["id"] for u in await officer2.get("/api/units")} == {"east-1"}
    assert "east-1" not in {u["id"] for u in await officer.get("/api/units")}
    assert {"north-1", "east-1", "school-1"} <= {u["id"] for u in await chief.get("/api/units")}
    assert (await officer2.request("GET", "/api/units/north-1"))[0] == 403
    assert (await officer2.request("PUT", "/api/units/north-1", {"version": 1, "name": "x"}))[0] == 403
    assert (await officer2.request("POST", "/api/units/north-1/retire", {}))[0] == 403
    assert (await officer2.request("GET", "/api/units/north-1/qr.pdf"))[0] == 403
    status, _ = await officer2.request("POST", "/api/units", unit_body(id="x", station_id="st-test", credit_code=""))
    assert status == 403
    # moving a unit to a station outside one's scope is refused; the brigade's officer may move it
    assert (await officer.request("PUT", "/api/units/north-1", {"version": 1, "station_id": "st-2"}))[0] == 403
    status, moved = await chief.request("PUT", "/api/units/north-1", {"version": 1, "station_id": "st-2"})
    assert status == 200 and moved["station_name"] == "思恩派出所"
    assert (await officer.request("GET", "/api/units/north-1"))[0] == 403
    # the brigade oversees two stations: it names the station of a new unit
    status, result = await chief.request("POST", "/api/units", unit_body(id="y", credit_code=""))
    assert status == 400 and "station_id is required" in result["error"]
    # a unit's login sees itself only; agencies do not read the registry
    assert [u["id"] for u in await school.get("/api/units")] == ["school-1"]
    assert (await school.request("GET", "/api/units/north-1"))[0] == 403
    await officer.request("POST", "/api/units/school-1/retire", {"reason": "撤并"})
    assert [u["id"] for u in await school.get("/api/units")] == ["school-1"]  # its own login still finds itself
    assert "school-1" not in {u["id"] for u in await officer.get("/api/units")}
    assert (await school.request("POST", "/api/units", unit_body(id="z")))[0] == 403
    assert (await agency.request("GET", "/api/units"))[0] == 403
    opts = await officer2.get("/api/units/options")
    assert [s["id"] for s in opts["stations"]] == ["st-2"]
    assert [o["username"] for o in opts["officers"]] == ["chief", "officer2"]  # the brigade's too: it is above


def csv_bytes(rows: list[list[Any]], header: list[str]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue().encode("utf-8")


HEADER_EN = ["id", "name", "credit_code", "address", "lat", "lon", "unit_type", "contact_name", "contact_phone",
             "floors", "area_m2", "occupancy", "facilities", "station_id", "community_officer"]


def good_row(i: int, **overrides: Any) -> list[Any]:
    row = {"id": f"imp-{i}", "name": f"导入单位{i}", "credit_code": credit_code(f"91451226MA6K{i:05d}"),
           "address": f"解放路{i}号", "lat": "24.8", "lon": "108.2", "unit_type": "宾馆", "contact_name": "负责人",
           "contact_phone": "13800000000", "floors": "5", "area_m2": "1200", "occupancy": "150",
           "facilities": "灭火器、室内消火栓;fire_exit", "station_id": "", "community_officer": ""}
    row.update(overrides)
    return [row[h] for h in HEADER_EN]


async def test_import_is_all_or_nothing_with_the_bad_rows_listed(app: RunningApp, users: dict[str, Api]) -> None:
    officer = await login(app, users, "officer")
    await officer.request("POST", "/api/units", unit_body(id="netbar-1"))
    rows = [good_row(i) for i in range(1, 11)]
    rows[2] = good_row(3, credit_code=CODE_1)  # row 4: taken by netbar-1 in the database
    rows[5] = good_row(6, floors="many")  # row 7
    rows[8] = good_row(9, id="imp-2")  # row 10: repeats row 3's id
    before = await counts(app)
    status, result = await upload(officer, "/api/units/import", csv_bytes(rows, HEADER_EN), "units.csv")
    assert status == 400, result
    assert [e["row"] for e in result["errors"]] == [4, 7, 10], result
    assert "already registered for unit 'netbar-1'" in result["errors"][0]["message"]
    assert "floors" in result["errors"][1]["message"]
    assert "repeats row 3" in result["errors"][2]["message"]
    assert await counts(app) == before  # nothing imported, nothing recorded

    rows[2], rows[5], rows[8] = good_row(3), good_row(6), good_row(9)
    status, result = await upload(officer, "/api/units/import", csv_bytes(rows, HEADER_EN), "units.csv")
    assert (status, result) == (200, {"imported": 10})
    got = await officer.get("/api/units/imp-6")
    assert (got["unit_type"], got["floors"], got["station_id"]) == ("hotel", 5, "st-test")
    assert got["facilities"] == ["extinguisher", "hydrant", "fire_exit"]
    assert [e["action"] for e in got["history"]] == ["unit.created"] and got["history"][0]["data"]["via"] == "import"
    assert await chain_intact(app)
    # the same file again: every row's id and credit code is taken now
    status, result = await upload(officer, "/api/units/import", csv_bytes(rows, HEADER_EN), "units.csv")
    assert status == 400 and len(result["errors"]) == 10

    for data, message in [(b"", "empty"), (b"\x00\x01\x02", "neither"),
                          ("名字,地址\n甲,乙\n".encode(), "unknown column"), ("地址\n乙\n".encode(), "no name")]:
        status, result = await upload(officer, "/api/units/import", data, "x.csv")
        assert status == 400 and message in str(result), (data, result)


async def test_xlsx_import_with_chinese_headers_and_export_round_trip(app: RunningApp, users: dict[str, Api]) -> None:
    from openpyxl import Workbook, load_workbook

    officer = await login(app, users, "officer")
    wb = Workbook()
    ws = wb.active
    ws.append(["单位名称", "统一社会信用代码", "地址", "纬度", "经度", "单位类型", "消防安全责任人", "责任人电话",
               "楼层数", "消防设施", "责任派出所", "社区民警"])
    ws.append(["思恩中学", CODE_1.lower(), "思恩镇中山路1号", 24.9, 108.3, "学校", "校长", 13900000001, 4.0,
               "灭火器，安全出口", "城北派出所", "officer"])
    ws.append(["思恩加油站", "", "思恩镇大道", None, None, "加油加气站", "站长", "0778-7654321", 1, "", "st-test", ""])
    buf = io.BytesIO()
    wb.save(buf)
    status, result = await upload(officer, "/api/units/import", buf.getvalue(), "units.xlsx")
    assert (status, result) == (200, {"imported": 2}), result
    found = await officer.get("/api/units?q=思恩中学")
    assert len(found) == 1
    school = found[0]
    assert (school["credit_code"], school["contact_phone"], school["floors"], school["community_officer"]) == (
        CODE_1, "13900000001", 4, "officer")
    assert school["facilities"] == ["extinguisher", "fire_exit"] and school["unit_type"] == "school"

    async with officer.http.get(officer.base + "/api/units/export?format=xlsx&q=思恩") as resp:
        assert resp.status == 200 and "attachment" in resp.headers["Content-Disposition"]
        sheet = load_workbook(io.BytesIO(await resp.read())).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0][:2] == ("单位编号", "单位名称") and {r[1] for r in rows[1:]} == {"思恩中学", "思恩加油站"}
    async with officer.http.get(officer.base + "/api/units/export?format=csv") as resp:
        text = await resp.text()
    assert text.startswith("\ufeff单位编号,单位名称") and "思恩加油站" in text and "第一小学" in text
    # an export imports again (elsewhere): here every id is taken — refused row by row, nothing changed
    status, result = await upload(officer, "/api/units/import", text.encode("utf-8"), "export.csv")
    assert status == 400 and all("taken" in e["message"] for e in result["errors"]), result


async def test_search_finds_by_name_address_and_credit_code(app: RunningApp, users: dict[str, Api]) -> None:
    officer = await login(app, users, "officer")
    await officer.request("POST", "/api/units", unit_body(id="netbar-1"))
    await officer.request("POST", "/api/units", unit_body(id="hotel-9", name="江景宾馆", credit_code=CODE_2,
                                                          address="河滨路 3 号", unit_type="hotel"))

    async def ids(query: str) -> set[str]:
        return {u["id"] for u in await officer.get(f"/api/units?{query}")}

    assert await ids("q=网吧") == {"netbar-1"}
    assert await ids("q=河滨路") == {"hotel-9"}
    assert await ids(f"q={CODE_2[10:].lower()}") == {"hotel-9"}  # part of the code, any case
    assert await ids("q=宾馆") == {"hotel-1", "hotel-9"}  # by name (config's 环江宾馆 and the new one)
    assert await ids("q=路 号 城北") == {"netbar-1", "school-1"}  # every word must be found
    assert await ids("q=100%25") == set()  # % is literal
    assert await ids("q=hotel") == {"hotel-1", "hotel-9"}  # by id
    assert await ids("unit_type=hotel") == {"hotel-1", "hotel-9"}
    assert await ids("unit_class=crowded&q=江") == {"hotel-1", "hotel-9"}
    assert await ids("station_id=st-2") == set()
    everything = [u["id"] for u in await officer.get("/api/units")]
    async with officer.http.get(officer.base + "/api/units?limit=2&offset=1") as resp:
        page = await resp.json()
        assert resp.headers["X-Total-Count"] == "4" and [u["id"] for u in page] == everything[1:3]
    for bad in ("limit=0", "offset=-1", "unit_type=Hotel", "nope=1"):
        assert (await officer.request("GET", f"/api/units?{bad}"))[0] == 400, bad


async def test_an_alarm_from_a_registered_unit_is_accepted_also_once_retired(app: RunningApp,
                                                                            users: dict[str, Api]) -> None:
    officer = await login(app, users, "officer")
    await officer.request("POST", "/api/units", unit_body(id="netbar-1"))
    pressed = await officer.post("/api/units/netbar-1/alarm", {"kind": "smoke"})
    incident = await officer.get(f"/api/incidents/{pressed['incident_id']}")
    assert incident["unit"]["name"] == "城北网吧" and incident["kind"] == "smoke"
    await officer.request("PUT", "/api/units/netbar-1", {"version": 1, "name": "城北星空网吧"})
    await officer.post(f"/api/incidents/{pressed['incident_id']}/close", {"outcome": "false_alarm"})
    await officer.request("POST", "/api/units/netbar-1/retire", {"reason": "停业"})
    again = await officer.post("/api/units/netbar-1/alarm", {"kind": "smoke"})  # a retired unit's alarm is kept
    incident = await officer.get(f"/api/incidents/{again['incident_id']}")
    assert incident["unit"]["name"] == "城北星空网吧"  # the intake's unit index follows edits


async def test_qr_codes_lead_officers_to_the_unit_and_anyone_else_to_the_complaint_form(
        app: RunningApp, users: dict[str, Api]) -> None:
    import cv2
    import numpy as np
    import pypdfium2 as pdfium

    officer = await login(app, users, "officer")
    assessor = await login(app, users, "assessor")
    officer2 = await login(app, users, "officer2")
    anon = Api(app.url)
    users["anon"] = anon
    await officer.request("POST", "/api/units", unit_body(id="netbar-1"))

    async def where(api: Api, path: str) -> str:
        async with api.http.get(api.base + path, allow_redirects=False) as resp:
            assert resp.status == 302, (path, resp.status)
            assert resp.headers["Cache-Control"] == "no-store"
            return resp.headers["Location"]

    assert await where(officer, "/q/netbar-1") == "/inspect.html?unit=netbar-1"
    assert await where(officer, "/q/netbar-1/extinguisher") == "/inspect.html?unit=netbar-1&facility=extinguisher"
    assert await where(assessor, "/q/netbar-1") == "/units.html#netbar-1"
    assert await where(anon, "/q/netbar-1") == "/report.html?unit=netbar-1"
    assert await where(anon, "/q/netbar-1/fire_exit") == "/report.html?unit=netbar-1&facility=fire_exit"
    assert await where(officer2, "/q/netbar-1") == "/report.html?unit=netbar-1"  # not in the officer's scope
    for path in ("/q/nope", "/q/netbar-1/moat", "/q/netbar-1/Bad!"):
        async with anon.http.get(anon.base + path, allow_redirects=False) as resp:
            assert resp.status == 404, path

    async with officer.http.get(officer.base + "/api/units/netbar-1/qr.pdf") as resp:
        assert resp.status == 200 and resp.content_type == "application/pdf"
        pdf = await resp.read()
    page = pdfium.PdfDocument(pdf)[0]
    pixels = np.array(page.render(scale=200 / 72).to_pil().convert("L"))
    ok, texts, _, _ = cv2.QRCodeDetector().detectAndDecodeMulti(pixels)
    base = app.cfg.public_url()
    assert ok and set(texts) == {f"{base}/q/netbar-1", f"{base}/q/netbar-1/extinguisher",
                                 f"{base}/q/netbar-1/fire_exit"}, texts  # emergency lighting has no code of its own
    assert (await anon.request("GET", "/api/units/netbar-1/qr.pdf"))[0] == 401


async def test_a_registered_unit_gets_a_login_from_the_cli_and_audit_verify_stays_intact(sqlite_url: str,
                                                                                        tmp_path: Path) -> None:
    users = [{"username": n, "password_hash": _hashed(f"{n}-pw"), **extra} for n, extra in USERS]
    cfg = base_config(sqlite_url, None, organisations=TREE, users=users)
    path = config_yaml(cfg, tmp_path / "firelink.yaml")
    async with running_app(cfg, mqtt=False) as app:
        officer = Api(app.url)
        await officer.login("officer", "officer-pw")
        assert (await officer.request("POST", "/api/units", unit_body(id="netbar-1")))[0] == 201
        await officer.request("PUT", "/api/units/netbar-1", {"version": 1, "occupancy": 120})
        await officer.close()
    code, _, err = await run_cli("--config", str(path), "user", "add", "netbar", "--role", "unit", "--unit",
                                 "netbar-1", "--password", "netbar-pw")  # a unit of the registry, not of the file
    assert code == 0, err
    code, out, _ = await run_cli("--config", str(path), "audit", "verify")
    assert code == 0 and "intact" in out, out
    async with running_app(cfg, mqtt=False) as app:
        netbar = Api(app.url)
        await netbar.login("netbar", "netbar-pw")
        assert [u["id"] for u in await netbar.get("/api/units")] == ["netbar-1"]
        await netbar.close()


async def _pdf_text(api: Api, path: str) -> tuple[bytes, str]:
    from pypdf import PdfReader

    async with api.http.get(api.base + path) as resp:
        assert resp.status == 200, path
        data = await resp.read()
    return data, "".join(p.extract_text() for p in PdfReader(io.BytesIO(data)).pages).replace(" ", "")


async def test_an_issued_notice_prints_the_unit_as_it_was_after_the_registry_is_edited(
        app: RunningApp, users: dict[str, Api]) -> None:
    """A 责令限期改正通知书 issued to 城北网吧 stays addressed to 城北网吧 (same bytes, `audit verify` intact) after
    the unit is renamed and moved; a notice issued after the edit prints the new name and address."""
    from console.appkeys import HAZARD_VIEWS
    from dispatch.document_pdf import verify_pdfs

    officer = await login(app, users, "officer")
    assert (await officer.request("POST", "/api/units", unit_body(id="netbar-1")))[0] == 201
    category = (await officer.get("/api/hazards/config"))["categories"][0]["key"]

    async def notice() -> int:
        _, hazard = await officer.request("POST", "/api/hazards", {"unit_id": "netbar-1", "category": category})
        answer = await officer.post(f"/api/hazards/{hazard['id']}/notice", {"days": 7})
        return int(answer["notice"]["id"] if "notice" in answer else answer["id"])

    first = await notice()
    before, text = await _pdf_text(officer, f"/api/notices/{first}/pdf")
    assert "城北网吧" in text and "城北路99号" in text
    status, _ = await officer.request("PUT", "/api/units/netbar-1", {"version": 1, "name": "城北星空网吧",
                                                                     "address": "解放路 1 号"})
    assert status == 200
    after, text = await _pdf_text(officer, f"/api/notices/{first}/pdf")
    assert after == before and "城北星空网吧" not in text
    _, text = await _pdf_text(officer, f"/api/notices/{await notice()}/pdf")
    assert "城北星空网吧" in text and "解放路1号" in text
    checked, differs = await verify_pdfs(app.app[HAZARD_VIEWS])
    assert checked == 2 and differs is None
