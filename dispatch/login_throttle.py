"""Failed logins lock an account and a client address for growing periods.

After `account_free_failures` failures for one user name (or `address_free_failures` from one client address,
whatever the names), every further failure locks that key for `base_lock_s`, doubling each time up to
`max_lock_s`. While locked, a login is refused before any password is checked, the right one included. A
successful login forgets its account's failures (not its address's, or one valid account would reset the
address throttle between guesses); failures are forgotten `forget_after_s` after the last one.

State is kept in memory: it holds for one core (the lease in dispatch.lease keeps it at one) and starts
empty after a restart. The clock is injected (seconds); the number of keys kept is bounded.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from config.schema import LoginThrottleConfig

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(self, cfg: LoginThrottleConfig | None = None, clock: Callable[[], float] = time.monotonic, *,
                 max_keys: int = 100_000) -> None:
        self.cfg = cfg or LoginThrottleConfig()
        self.clock = clock
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Failures] = OrderedDict()

    @staticmethod
    def _account(username: str) -> str:
        return "user:" + username.casefold()

    @staticmethod
    def _address(address: str) -> str:
        return "addr:" + address

    def _get(self, key: str, now: float) -> _Failures | None:
        f = self._keys.get(key)
        if f is not None and now >= f.locked_until and now - f.last > self.cfg.forget_after_s:
            del self._keys[key]
            return None
        return f

    def retry_after(self, username: str, address: str) -> float:
        """Seconds until a login for `username` from `address` may be tried; 0 when it may now."""
        now = self.clock()
        waits = [f.locked_until - now for key in (self._account(username), self._address(address))
                 if (f := self._get(key, now)) is not None]
        return max([0.0, *waits])

    def failed(self, username: str, address: str) -> float:
        """Counts a failed login; returns the lock it started (seconds, 0 for none)."""
        now = self.clock()
        lock = 0.0
        for key, free in ((self._account(username), self.cfg.account_free_failures),
                          (self._address(address), self.cfg.address_free_failures)):
            f = self._get(key, now) or _Failures()
            f.count += 1
            f.last = now
            if f.count >= free:
                seconds = min(self.cfg.max_lock_s, self.cfg.base_lock_s * 2.0 ** min(f.count - free, 64))
                f.locked_until = now + seconds
                lock = max(lock, seconds)
                log.warning("login locked for %.0f s: %s after %d failed logins", seconds, key[:80], f.count)
            self._keys[key] = f
            self._keys.move_to_end(key)
        self._bound(now)
        return lock

    def succeeded(self, username: str) -> None:
        self._keys.pop(self._account(username), None)

    def _bound(self, now: float) -> None:
        if len(self._keys) <= self.max_keys:
            return
        for key in [k for k, f in self._keys.items() if now >= f.locked_until]:  # unlocked ones first
            del self._keys[key]
            if len(self._keys) <= self.max_keys // 2:
                return
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
