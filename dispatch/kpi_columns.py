"""Per-incident KPI facts as columns (numpy), so a period's response-time KPIs are a few vectorised passes.

One slot per incident, rewritten when its facts change (dispatch.kpi_facts marks it dirty while folding). A period
selects its incidents with one mask over `created_us`; the blocks below compute exactly what the definitions say
(dispatch/kpi.py) — spans are the same floats the per-incident code gave, quantiles the same formula on the same
sorted values — only without a Python-level loop per incident.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from config.hazards import KpiTargets

if TYPE_CHECKING:
    from dispatch.kpi_facts import IncidentFacts

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_HOUR_US = 3_600_000_000
NOT_CREATED = np.iinfo(np.int64).min
OUTCOMES = {None: 0, "resolved": 1, "false_alarm": 2}  # any other outcome: 3 (closed, neither)

F8 = npt.NDArray[np.float64]
I8 = npt.NDArray[np.int64]
I4 = npt.NDArray[np.int32]


def micros(at: datetime) -> int:
    """Exact microseconds since 1970 (UTC)."""
    return (at - EPOCH) // _US


def share(num: int, den: int) -> float | None:
    return None if den == 0 else round(num / den, 4)


def quantile_sorted(xs: F8, p: float) -> float | None:
    """kpi.quantile on already sorted values: linear interpolation between closest ranks (R type 7)."""
    if len(xs) == 0:
        return None
    pos = (len(xs) - 1) * p
    lo, hi = math.floor(pos), math.ceil(pos)
    a, b = float(xs[lo]), float(xs[hi])
    return round(a + (b - a) * (pos - lo), 3)


def _present(values: F8) -> F8:
    return np.sort(values[~np.isnan(values)])


@dataclass(frozen=True, slots=True)
class Selection:
    """The incidents of one period, column by column."""

    ack_s: F8
    disp_s: F8
    handled_s: F8
    alarms: I8
    outcome: npt.NDArray[np.int8]
    escalations: I8
    officer: I4
    unit: I4
    hour: I8

    def __len__(self) -> int:
        return len(self.ack_s)

    def _take(self, index: Any) -> Selection:
        return Selection(self.ack_s[index], self.disp_s[index], self.handled_s[index], self.alarms[index],
                         self.outcome[index], self.escalations[index], self.officer[index], self.unit[index],
                         self.hour[index])

    def none(self) -> Selection:
        return self._take(slice(0, 0))

    def of_units(self, codes: Sequence[int]) -> Selection:
        """The incidents of these units (by code) only."""
        return self._take(np.isin(self.unit, np.asarray(codes, dtype=self.unit.dtype)))

    def by_officer(self) -> dict[int, Selection]:
        """The incidents each acknowledging officer (by code) took, in one sort rather than a mask per officer."""
        if len(self) == 0:
            return {}
        order = np.argsort(self.officer, kind="stable")
        ordered = self._take(order)
        codes, first = np.unique(ordered.officer, return_index=True)
        ends = [*first[1:].tolist(), len(ordered)]
        return {int(c): ordered._take(slice(a, b)) for c, a, b in zip(codes.tolist(), first.tolist(), ends,
                                                                        strict=True)}

    def response_block(self, t: KpiTargets) -> dict[str, Any]:
        n = len(self)
        ack, disp, handled = _present(self.ack_s), _present(self.disp_s), _present(self.handled_s)
        return {
            "alarms_handled": n,
            "ack_median_s": quantile_sorted(ack, 0.5),
            "ack_p90_s": quantile_sorted(ack, 0.9),
            "dispatch_median_s": quantile_sorted(disp, 0.5),
            "dispatch_p90_s": quantile_sorted(disp, 0.9),
            "ack_within_target_share": share(int(np.count_nonzero(ack <= t.ack_s)), n),
            "dispatch_within_target_share": share(int(np.count_nonzero(disp <= t.dispatch_s)), len(disp)),
            "handled_within_2min_share": share(int(np.count_nonzero(handled <= t.response_s)), n),
            "escalations": int(self.escalations.sum()),
        }


class IncidentColumns:
    def __init__(self, capacity: int = 1024) -> None:
        self.n = 0
        self.slot: dict[int, int] = {}
        self.officers: list[str | None] = []  # code → name
        self._officer_code: dict[str | None, int] = {}
        self.units: list[str] = []
        self._unit_code: dict[str, int] = {}
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        def grow(old: npt.NDArray[Any] | None, dtype: Any, fill: Any) -> npt.NDArray[Any]:
            new = np.full(capacity, fill, dtype=dtype)
            if old is not None:
                new[: self.n] = old[: self.n]
            return new

        had = getattr(self, "created_us", None) is not None
        self.created_us: I8 = grow(self.created_us if had else None, np.int64, NOT_CREATED)
        self.hour: I8 = grow(self.hour if had else None, np.int64, 0)
        self.ack_s: F8 = grow(self.ack_s if had else None, np.float64, np.nan)
        self.disp_s: F8 = grow(self.disp_s if had else None, np.float64, np.nan)
        self.handled_s: F8 = grow(self.handled_s if had else None, np.float64, np.nan)
        self.alarms: I8 = grow(self.alarms if had else None, np.int64, 0)
        self.outcome: npt.NDArray[np.int8] = grow(self.outcome if had else None, np.int8, 0)
        self.escalations: I8 = grow(self.escalations if had else None, np.int64, 0)
        self.officer: I4 = grow(self.officer if had else None, np.int32, -1)
        self.unit: I4 = grow(self.unit if had else None, np.int32, 0)

    def _code(self, officer: str | None) -> int:
        code = self._officer_code.get(officer)
        if code is None:
            code = self._officer_code[officer] = len(self.officers)
            self.officers.append(officer)
        return code

    def unit_code(self, unit_id: str) -> int:
        code = self._unit_code.get(unit_id)
        if code is None:
            code = self._unit_code[unit_id] = len(self.units)
            self.units.append(unit_id)
        return code

    def find_unit(self, unit_id: str) -> int | None:
        return self._unit_code.get(unit_id)

    def officer_code(self, officer: str) -> int | None:
        return self._officer_code.get(officer)

    def put(self, f: IncidentFacts) -> None:
        i = self.slot.get(f.id)
        if i is None:
            if self.n == len(self.created_us):
                self._alloc(2 * self.n)
            i = self.slot[f.id] = self.n
            self.n += 1
        nan = math.nan
        ack, disp, handled = f.span(f.ack_at), f.span(f.dispatch_at), f.span(f.handled_at)
        created = NOT_CREATED if f.created_at is None else micros(f.created_at)
        self.created_us[i] = created
        self.hour[i] = created // _HOUR_US if f.created_at is not None else 0
        self.ack_s[i] = nan if ack is None else ack
        self.disp_s[i] = nan if disp is None else disp
        self.handled_s[i] = nan if handled is None else handled
        self.alarms[i] = f.alarms
        self.outcome[i] = OUTCOMES.get(f.outcome, 3)
        self.escalations[i] = f.escalations
        self.officer[i] = -1 if f.ack_by is None else self._code(f.ack_by)
        self.unit[i] = self.unit_code(f.unit_id)

    def select(self, start: datetime, end: datetime) -> Selection:
        n = self.n
        created = self.created_us[:n]
        mask = (created >= micros(start)) & (created < micros(end))
        return Selection(self.ack_s[:n][mask], self.disp_s[:n][mask], self.handled_s[:n][mask], self.alarms[:n][mask],
                         self.outcome[:n][mask], self.escalations[:n][mask], self.officer[:n][mask],
                         self.unit[:n][mask], self.hour[:n][mask])


def trend_points(sel: Selection, buckets: list[str], name: Callable[[int], str]) -> list[dict[str, Any]]:
    """Alarms and median alarm→ack / alarm→dispatch per bucket; `name(hour)` is the bucket key of an hour
    (an incident whose key is not a bucket is left out, as the per-incident code did)."""
    index = {k: i for i, k in enumerate(buckets)}
    hours, inverse = np.unique(sel.hour, return_inverse=True)
    of_hour = np.array([index.get(name(int(h)), -1) for h in hours], dtype=np.int64)
    bucket = of_hour[inverse.reshape(-1)] if len(hours) else np.zeros(0, dtype=np.int64)
    keep = bucket >= 0
    bucket, ack, disp = bucket[keep], sel.ack_s[keep], sel.disp_s[keep]
    order = np.argsort(bucket, kind="stable")
    counts = np.bincount(bucket, minlength=len(buckets))
    bounds = np.concatenate(([0], np.cumsum(counts)))
    ack, disp = ack[order], disp[order]
    out = []
    for i, _k in enumerate(buckets):
        a, b = bounds[i], bounds[i + 1]
        out.append((int(counts[i]), quantile_sorted(_present(ack[a:b]), 0.5),
                    quantile_sorted(_present(disp[a:b]), 0.5)))
    return [{"alarms": c, "ack_median_s": am, "dispatch_median_s": dm} for c, am, dm in out]
