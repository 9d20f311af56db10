"""The triage routing rule (docs/complaints.md, "Triage"), on its own: the named unit's station, else the nearest
unit with coordinates within the distance (retired ones left out), else the default station."""

from __future__ import annotations

from datetime import UTC, datetime

from dispatch.complaint_routing import distance_m, route
from dispatch.models import Unit


def unit(uid: str, station: str | None, lat: float | None, lon: float | None, retired: bool = False) -> Unit:
    return Unit(id=uid, name=uid, category="学校", lat=lat, lon=lon, station_id=station,
                retired_at=datetime(2026, 1, 1, tzinfo=UTC) if retired else None)


UNITS = [unit("a", "st-a", 24.8000, 108.2000), unit("b", "st-b", 24.8050, 108.2000),
         unit("gone", "st-gone", 24.8001, 108.2001, retired=True), unit("nowhere", "st-x", None, None)]


def test_one_thousandth_of_a_degree_of_latitude_is_about_111_metres() -> None:
    assert 111.0 < distance_m(24.800, 108.2, 24.801, 108.2) < 111.4


def test_the_named_units_station_wins_over_any_position() -> None:
    r = route(UNITS, "st-default", unit=UNITS[1], lat=24.8, lon=108.2, within_m=1000)
    assert (r.station_id, r.routed_by, r.unit_id) == ("st-b", "unit", "b")


def test_the_nearest_unit_within_the_distance_retired_ones_left_out() -> None:
    near_a = route(UNITS, "st-default", unit=None, lat=24.8002, lon=108.2002, within_m=1000)
    assert (near_a.station_id, near_a.routed_by, near_a.unit_id) == ("st-a", "location", "a")  # not the retired one
    assert near_a.distance_m is not None and 25 < near_a.distance_m < 35
    near_b = route(UNITS, "st-default", unit=None, lat=24.8040, lon=108.2000, within_m=1000)
    assert (near_b.station_id, near_b.unit_id) == ("st-b", "b")
    # 0.005° north of b ≈ 556 m: inside 600 m, outside 500 m
    assert route(UNITS, "st-default", unit=None, lat=24.8100, lon=108.2, within_m=600).station_id == "st-b"
    far = route(UNITS, "st-default", unit=None, lat=24.8100, lon=108.2, within_m=500)
    assert (far.station_id, far.routed_by, far.unit_id) == ("st-default", "default", None)


def test_without_a_position_or_with_routing_off_the_default_station() -> None:
    assert route(UNITS, "st-default", unit=None, lat=None, lon=None, within_m=1000).routed_by == "default"
    assert route(UNITS, "st-default", unit=None, lat=24.8, lon=108.2, within_m=0).routed_by == "default"
