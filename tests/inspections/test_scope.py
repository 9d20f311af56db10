"""Who sees and makes which inspections: an officer of another station can neither inspect a unit here nor read
its inspections; a unit reads its own and no other's; the assessor reads; an agency reads none."""

from __future__ import annotations

from typing import Any

from config.schema import FirelinkConfig
from tests.hazards.conftest import config, hazard_app, login
from tests.inspections.support import body, checklist, inspect
from tests.support import _hashed


def two_stations(db_url: str) -> FirelinkConfig:
    """The test station and a second one under the same brigade, with an officer of its own."""
    cfg = config(db_url)
    data: dict[str, Any] = cfg.model_dump(mode="python")
    data["organisations"] = [
        {"id": "city", "name": "市公安局", "level": "city"},
        {"id": "brigade", "name": "公安分局", "level": "brigade", "parent": "city"},
        {"id": "st-test", "name": "测试派出所", "level": "station", "parent": "brigade"},
        {"id": "st-other", "name": "城西派出所", "level": "station", "parent": "brigade"},
    ]
    data["users"] = [*data["users"], {"username": "westofficer", "password_hash": _hashed("westofficer-pw"),
                                      "role": "duty_officer", "org": "st-other"}]
    for u in data["users"]:
        if u.get("password") is not None:
            u["password"] = u["password"].get_secret_value()
    return FirelinkConfig.model_validate(data)


async def test_scope_of_inspections(db_url: str) -> None:
    async with hazard_app(two_stations(db_url)) as running:
        officer, west = await login(running.url, "officer"), await login(running.url, "westofficer")
        school, hotel = await login(running.url, "school"), await login(running.url, "hotel")
        assessor, brigade = await login(running.url, "assessor"), await login(running.url, "brigade")
        try:
            made = await inspect(officer, "school-1", fails={"wiring": "私拉电线"})
            other = await inspect(officer, "hotel-1")
            # another station's officer: no checklist of the unit, no submission, no reading
            status, answer = await west.request("GET", "/api/units/school-1/inspection")
            assert status == 403 and "not in your area" in answer["error"]
            cl = await checklist(officer, "school-1")
            status, answer = await west.request("POST", "/api/inspections", body(cl, "school-1"))
            assert status == 403, answer
            for path in (f"/api/inspections/{made['id']}", f"/api/inspections/{made['id']}/pdf",
                         f"/api/inspections/{made['id']}/signature"):
                status, _ = await west.request("GET", path)
                assert status == 403, path
            assert await west.get("/api/inspections") == []
            assert await west.get("/api/inspections?unit_id=school-1") == []
            # the unit reads its own, not another unit's
            assert [i["id"] for i in await school.get("/api/inspections")] == [made["id"]]
            assert [i["id"] for i in await school.get("/api/inspections?unit_id=hotel-1")] == []
            assert (await school.get(f"/api/inspections/{made['id']}"))["hazards"][0]["category"] == "illegal_wiring"
            status, _ = await school.request("GET", f"/api/inspections/{other['id']}")
            assert status == 403
            assert [i["id"] for i in await hotel.get("/api/inspections")] == [other["id"]]
            async with school.http.get(school.base + made["pdf"]) as resp:
                assert resp.status == 200 and resp.content_type == "application/pdf"
            status, _ = await school.request("GET", f"/api/inspections/{other['id']}/pdf")
            assert status == 403
            # the assessor reads the station's; an agency none (the brigade's read view is the lead's part)
            assert {i["id"] for i in await assessor.get("/api/inspections")} == {made["id"], other["id"]}
            status, _ = await brigade.request("GET", "/api/inspections")
            assert status == 403
            status, _ = await assessor.request("POST", "/api/inspections", body(cl, "school-1"))
            assert status == 403
        finally:
            for api in (officer, west, school, hotel, assessor, brigade):
                await api.close()
