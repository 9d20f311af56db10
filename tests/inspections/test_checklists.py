"""The checklists data file: the shipped one is valid and covers the unit types it names; a file that breaks a rule
is refused with a message naming the item (and the app does not start on it)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.checklists import ChecklistError, load_checklists, parse_checklists
from config.hazards import HazardsConfig
from config.taxonomy import shipped_taxonomy
from tests.hazards.conftest import config, hazard_app, login

HCFG = HazardsConfig()
SEEDED = {"school": "学校、幼儿园", "hotel": "宾馆、旅馆", "market": "商场、市场", "internet_cafe": "网吧",
          "factory": "生产加工企业", "workshop": "生产加工企业", "warehouse": "仓储物流", "small_shop": "九小场所",
          "small_restaurant": "九小场所", "government": "通用检查项目"}


def test_the_shipped_checklists_are_valid_and_seeded() -> None:
    lists = load_checklists(HCFG)
    assert lists.version >= 1
    base = [i.id for i in lists.for_type("government").items]
    for unit_type, name in SEEDED.items():
        cl = lists.for_type(unit_type)
        assert cl.name == name, unit_type
        assert [i.id for i in cl.items][:len(base)] == base  # the shared base first, then the type's own
        for item in cl.items:
            clause, cat = HCFG.clause(item.clause), HCFG.category(item.category)
            assert clause is not None and cat is not None and item.category in clause.covers, item.id
    # the generic list checks what every police-station inspection checks (公安部令第120号 art. 31)
    generic = {i.category for i in lists.for_type("government").items}
    assert {"blocked_exit", "locked_exit", "fire_lane_blocked", "missing_extinguisher", "hydrant_obstructed",
            "evacuation_lighting", "illegal_wiring", "flammables", "safety_management", "facility_fault"} <= generic
    assert "control_room" in {i.category for i in lists.for_type("hotel").items}
    # every unit type named by a list exists in the taxonomy; pre-opening asks other items than a daily check
    assert {t for lst in lists.data.lists for t in lst.types} <= set(shipped_taxonomy().types())
    daily = {i.id for i in lists.for_type("hotel", "daily").items}
    pre = {i.id for i in lists.for_type("hotel", "pre_opening").items}
    assert "hotel.permit" in daily - pre and "pre_facilities_ready" in pre - daily


def _file(**changes: object) -> str:
    data = {"version": 3, "base": [
        {"id": "exits", "zh": "疏散通道畅通", "en": "Exits clear", "clause": "fire_law_28", "category": "blocked_exit"},
        {"id": "wiring", "zh": "电气线路规范", "en": "Wiring", "clause": "fire_law_27", "category": "illegal_wiring"}],
        "lists": [{"name": "学校", "types": ["school"], "items": [
            {"id": "school.dorm", "zh": "宿舍无大功率电器", "en": "Dorms", "clause": "fire_law_27",
             "category": "illegal_wiring"}]}]}
    data.update(changes)
    return yaml.safe_dump(data, allow_unicode=True)


def test_a_bad_file_is_refused_with_a_clear_message() -> None:
    assert parse_checklists(_file(), HCFG).for_type("school").name == "学校"
    good = yaml.safe_load(_file())
    item = good["base"][0]
    cases = [
        (_file(version=None), "version"),
        ("version: [1\n", "not valid YAML"),
        (_file(base=[{**item, "clause": "no_such_clause"}]), "clause 'no_such_clause', which is not in the clause"),
        (_file(base=[{**item, "category": "no_such"}]), "category 'no_such', which is not configured"),
        (_file(base=[{**item, "clause": "fire_law_27"}]), "does not cover the category 'blocked_exit'"),
        (_file(base=[item, item]), "item ids used twice: ['exits']"),
        (_file(lists=[{**good["lists"][0], "types": ["spaceport"]}]), "names unit types ['spaceport']"),
        (_file(lists=[good["lists"][0], {**good["lists"][0], "name": "again",
                                         "items": [{**good["lists"][0]["items"][0], "id": "school.x"}]}]),
         "unit types in two lists: ['school']"),
        (_file(base=[{**item, "id": "Bad Id"}]), "base.0.id"),
        (_file(base=[{**item, "kinds": ["weekly"]}]), "base.0.kinds.0"),
        (_file(base=[{**item, "extra": 1}]), "base.0.extra"),
    ]
    for text, why in cases:
        with pytest.raises(ChecklistError) as caught:
            parse_checklists(text, HCFG, source="test.yaml")
        assert why in str(caught.value) and "test.yaml" in str(caught.value), (why, str(caught.value))


async def test_the_app_does_not_start_on_a_bad_checklists_file(sqlite_url: str, tmp_path: Path) -> None:
    bad = tmp_path / "checklists.yaml"
    bad.write_text(_file(base=[{"id": "x", "zh": "x", "en": "x", "clause": "fire_law_27", "category": "blocked_exit"}]),
                   encoding="utf-8")
    with pytest.raises(ChecklistError, match="does not cover the category 'blocked_exit'"):
        async with hazard_app(config(sqlite_url, hazards={"checklists_file": str(bad)})):
            pass
    good = tmp_path / "good.yaml"
    good.write_text(_file(), encoding="utf-8")
    other_db = f"sqlite+aiosqlite:///{tmp_path}/other.db"  # the refused start left its lease on the first one
    async with hazard_app(config(other_db, hazards={"checklists_file": str(good)})) as running:
        officer = await login(running.url, "officer")
        try:
            cl = await officer.get("/api/checklists/school")
            assert (cl["version"], [i["id"] for i in cl["items"]]) == (3, ["exits", "wiring", "school.dorm"])
        finally:
            await officer.close()
