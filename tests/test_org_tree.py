"""The command tree (city → brigade → station) from config, and the unit taxonomy data file."""

from __future__ import annotations

import pytest

from config.loader import ConfigError, embedded_defaults, parse
from config.taxonomy import shipped_taxonomy
from dispatch.org_tree import Org, OrgTree

TREE = [
    {"id": "hc", "name": "河池市公安局", "level": "city"},
    {"id": "hj", "name": "环江县公安局", "level": "brigade", "parent": "hc"},
    {"id": "yz", "name": "宜州区公安分局", "level": "brigade", "parent": "hc"},
    {"id": "hj-1", "name": "城北派出所", "level": "station", "parent": "hj"},
    {"id": "hj-2", "name": "思恩派出所", "level": "station", "parent": "hj"},
    {"id": "yz-1", "name": "庆远派出所", "level": "station", "parent": "yz"},
]


def test_default_tree_puts_the_station_under_one_city_and_brigade() -> None:
    cfg = parse(embedded_defaults(), "defaults")
    tree = OrgTree.of(Org(o.id, o.name, o.level, o.parent) for o in cfg.orgs())
    assert [o.level for o in tree.ancestors(cfg.station.id)] == ["station", "brigade", "city"]
    assert tree.stations_under("city") == {cfg.station.id}


def test_subtrees_follow_the_configured_tree() -> None:
    cfg = parse({"station": {"id": "hj-1"}, "organisations": TREE}, "t")
    tree = OrgTree.of(Org(o.id, o.name, o.level, o.parent) for o in cfg.orgs())
    assert tree.stations_under("hc") == {"hj-1", "hj-2", "yz-1"}
    assert tree.stations_under("hj") == {"hj-1", "hj-2"}
    assert tree.stations_under("hj-2") == {"hj-2"}
    assert tree.subtree("nowhere") == frozenset()


@pytest.mark.parametrize(("change", "message"), [
    ({"parent": "hc"}, "needs a parent of level brigade"),  # a station directly under the city
    ({"parent": "hj-2"}, "needs a parent of level brigade"),
    ({"parent": "missing"}, "needs a parent of level brigade"),
])
def test_a_station_must_hang_under_a_brigade(change: dict[str, str], message: str) -> None:
    tree = [dict(o) for o in TREE]
    tree[3].update(change)
    with pytest.raises(ConfigError, match=message):
        parse({"station": {"id": "hj-1"}, "organisations": tree}, "t")


def test_units_and_users_name_known_organisations() -> None:
    with pytest.raises(ConfigError, match="not an organisation of level station"):
        parse({"station": {"id": "hj-1"}, "organisations": TREE,
               "units": [{"id": "u1", "name": "U", "station": "hj"}]}, "t")
    with pytest.raises(ConfigError, match="not an organisation of level station"):
        parse({"station": {"id": "hj"}, "organisations": TREE}, "t")


def test_taxonomy_resolves_codes_names_and_old_category_texts() -> None:
    tax = shipped_taxonomy()
    assert tax.resolve("学校") is not None and tax.resolve("学校").code == "school"  # type: ignore[union-attr]
    assert tax.resolve("宾馆") is not None and tax.resolve("宾馆").code == "hotel"  # type: ignore[union-attr]
    assert tax.resolve("hotel") == tax.resolve("宾馆/旅馆")
    assert tax.resolve("no such type") is None
    crowded = tax.class_of("internet_cafe")
    assert crowded is not None and crowded.zh == "人员密集场所"
    assert len(tax.classes) >= 7 and len(tax.types()) >= 20


def test_scope_follows_the_users_organisation() -> None:
    from dispatch.actor import Actor
    from dispatch.scope import scope_of

    cfg = parse({"station": {"id": "hj-1"}, "organisations": TREE}, "t")
    tree = OrgTree.of(Org(o.id, o.name, o.level, o.parent) for o in cfg.orgs())
    assert scope_of(Actor("a", "duty_officer", org_id="hj-2"), tree, "hj-1").stations == {"hj-2"}
    assert scope_of(Actor("b", "assessor", org_id="hj"), tree, "hj-1").stations == {"hj-1", "hj-2"}
    assert scope_of(Actor("c", "duty_officer"), tree, "hj-1").stations == {"hj-1"}  # stored before the tree
    assert scope_of(Actor("d", "admin"), tree, "hj-1").stations == {"hj-1", "hj-2", "yz-1"}
    unit = scope_of(Actor("e", "unit", unit_id="u1"), tree, "hj-1")
    assert unit.sees_unit("u1", "hj-2") and not unit.sees_unit("u2", "hj-1") and not unit.stations


def test_config_accepts_exactly_the_roles_of_the_role_table() -> None:
    from typing import get_args

    from config.schema import RoleName
    from dispatch.roles import ROLE_TABLE, with_power

    assert set(get_args(RoleName)) == set(ROLE_TABLE)
    assert with_power("approve") == {"admin", "station_chief", "deputy_chief"}
    assert "brigade_reviewer" in with_power("read") and "brigade_reviewer" not in with_power("act")
