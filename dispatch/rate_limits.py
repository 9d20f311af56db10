"""Sliding-window rate limits per key (a client address, a browser, an account): at most `limit` in any `window_s`.

The sliding-window log is pyrate-limiter's (`InMemoryBucket` with its default `SlidingWindowLog`), one bucket per
key, fed the injected clock's time; what is kept here is only which keys have a bucket. Kept in memory like the
login throttle: it holds for one core (dispatch.lease keeps it at one) and starts empty after a restart. The
number of keys is bounded: idle buckets are dropped first, then the oldest.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from pyrate_limiter import Decision, InMemoryBucket, Rate, RateItem

from config.complaints import ComplaintsConfig


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    retry_after_s: float = 0.0  # when refused: seconds until one more would be allowed


class SlidingLimit:
    """At most `limit` events per key in any window of `window_s` seconds."""

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic, *,
                 max_keys: int = 100_000) -> None:
        self.rate = Rate(limit, int(window_s * 1000))
        self.window_ms = int(window_s * 1000)
        self.clock = clock
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, InMemoryBucket] = OrderedDict()

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def hit(self, key: str) -> Verdict:
        """Counts one event for `key` if the window has room; refuses it (nothing counted) otherwise."""
        now = self._now_ms()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = InMemoryBucket([self.rate])
            self._bound(now)
        self._buckets.move_to_end(key)
        bucket.leak(now)
        decision = bucket.put_decision(RateItem(key, now))
        assert isinstance(decision, Decision)  # an in-memory bucket decides at once (no awaitable)
        if decision.allowed:
            return Verdict(True)
        wait_ms = decision.retry_after_ms if decision.retry_after_ms is not None else self.window_ms
        return Verdict(False, max(wait_ms, 1) / 1000)

    def _bound(self, now_ms: int) -> None:
        if len(self._buckets) <= self.max_keys:
            return
        for key in list(self._buckets):  # oldest first: those whose window has passed go
            bucket = self._buckets[key]
            bucket.leak(now_ms)
            if not bucket.count():
                del self._buckets[key]
            if len(self._buckets) <= self.max_keys // 2:
                return
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


@dataclass(frozen=True, slots=True)
class ReportLimits:
    """The complaint intake's limits (config.complaints): reports per client address and per device (a browser's
    reporter cookie, or an assistant's login), and lookups (receipts, unit names) per client address."""

    by_address: SlidingLimit
    by_device: SlidingLimit
    lookups: SlidingLimit

    @classmethod
    def of(cls, cfg: ComplaintsConfig, clock: Callable[[], float] = time.monotonic) -> ReportLimits:
        return cls(SlidingLimit(cfg.per_address_per_hour, 3600, clock),
                   SlidingLimit(cfg.per_device_per_hour, 3600, clock),
                   SlidingLimit(cfg.lookups_per_address_per_hour, 3600, clock))

    def report(self, address: str, device: str | None) -> Verdict:
        """One report from `address` (and `device`, when known): refused when either is over its limit."""
        verdict = self.by_address.hit(address)
        if verdict.allowed and device is not None:
            verdict = self.by_device.hit(device)
        return verdict
