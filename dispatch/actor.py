"""Who acts on the core: a logged-in user, an agency's system, or the system itself."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action: a logged-in user, an agency's system, or the system itself."""

    username: str
    role: str  # admin | duty_officer | unit | agency | assessor | system
    unit_id: str | None = None
    agency: str | None = None
    real_name: str = ""  # 姓名 printed on documents; empty: the login name stands in
    badge: str = ""  # 警号
    org_id: str | None = None  # the organisation whose subtree this user sees; None: not a member of the tree
    stations: frozenset[str] | None = None  # the stations whose work it sees (dispatch.scope); None: no limit

    def sees_station(self, station_id: str | None) -> bool:
        """Whether this actor's scope holds the station (units: see `sees_unit`)."""
        return self.stations is None or (station_id is not None and station_id in self.stations)

    def sees_unit(self, unit_id: str, station_id: str | None) -> bool:
        """Whether this actor may see the unit's work: a unit only itself, others by station."""
        if self.role == "unit":
            return unit_id == self.unit_id
        return self.sees_station(station_id)

    @property
    def signature(self) -> str:
        """How documents name this person: "韦明（警号 451203）", the real name alone, else the login name."""
        if not self.real_name:
            return self.username
        return f"{self.real_name}（警号 {self.badge}）" if self.badge else self.real_name


SYSTEM = Actor("system", "system")
