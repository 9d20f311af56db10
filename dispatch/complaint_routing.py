"""Whose triage queue a report lands in (docs/complaints.md, "Triage rule"):

1. a report naming a unit (a QR code, an assistant, the hotline) → that unit's station (`units.station_id`);
2. else, with a position → the station of the nearest unit with coordinates (retired units left out) within
   `complaints.route_within_m` metres;
3. else → the default station (`station.id`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from dispatch.models import Unit

EARTH_RADIUS_M = 6_371_008.8


@dataclass(frozen=True, slots=True)
class Route:
    station_id: str
    routed_by: str  # unit | location | default
    unit_id: str | None = None  # the nearest unit (location) or the named one (unit)
    distance_m: float | None = None


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) in metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def route(units: Iterable[Unit], default_station: str, *, unit: Unit | None, lat: float | None,
          lon: float | None, within_m: float) -> Route:
    if unit is not None and unit.station_id:
        return Route(unit.station_id, "unit", unit.id)
    if lat is not None and lon is not None and within_m > 0:
        # a box around the point first (cheap), the exact distance only inside it
        dlat = math.degrees(within_m / EARTH_RADIUS_M)
        dlon = dlat / max(0.01, math.cos(math.radians(lat)))
        best: tuple[float, Unit] | None = None
        for u in units:
            if u.lat is None or u.lon is None or u.station_id is None or u.retired_at is not None:
                continue
            if abs(u.lat - lat) > dlat or abs(u.lon - lon) > dlon:
                continue
            d = distance_m(lat, lon, u.lat, u.lon)
            if d <= within_m and (best is None or d < best[0]):
                best = (d, u)
        if best is not None:
            return Route(best[1].station_id or default_station, "location", best[1].id, round(best[0], 1))
    return Route(default_station, "default")
