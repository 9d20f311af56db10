"""The intake's inbound half, shared by the broker adapters (MQTT: ingest.mqtt_link, AMQP: ingest.amqp_intake).

Deliveries are handed over (from any thread, through `_enqueue`) into two lanes, alarms first; a pump commits
them in batches (one transaction per batch keeps up with bursts) through the handler, and only then
acknowledges each to its broker (`_acknowledge`, the adapter's part). Nothing is acknowledged that is not
committed; if the process dies first, the broker redelivers and the core absorbs the duplicate by alarm_id.

Poison cannot stall or loop: a batch that fails while the database is healthy is split until the failing
message is alone, tried POISON_AFTER times, then stored as a rejection and acknowledged. A message the broker
redelivers is counted in a persistent journal before it is handled, so one that keeps taking the whole process
down is quarantined too instead of killing every restart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ingest.contract import CoreInput, Rejection, printable, utcnow
from ingest.payloads import MAX_TOPIC_CHARS, excerpt

log = logging.getLogger(__name__)

Handler = Callable[[list[CoreInput]], Awaitable[Mapping[int, Exception] | None]]
"""Commits a batch. Raises when nothing of it can be trusted to be committed; otherwise returns the positions
of the items that failed on their own (with why), everything else being committed."""

MAX_BATCH = 500  # alarms per transaction
MAX_OTHER_BATCH = 50  # anything else (rejections, device status, agency acks): an alarm never waits for more
OTHERS_MAX_WAIT_S = 0.5  # during an alarm flood, other messages still get a batch once they waited this long
POISON_AFTER = 3  # failures of one message alone, while the database is healthy, before it is quarantined
CRASHES_BEFORE_QUARANTINE = 2  # restarts that died while handling one redelivered message alone


class AttemptJournal(Protocol):
    """Persistent counts of how often a redelivered message was tried (dispatch.inbox.IntakeJournal)."""

    async def attempt(self, keys: Sequence[str], solo: bool) -> dict[str, tuple[int, int]]:
        """Counts one more try of each key; returns (tries, tries alone) before this one."""
        ...

    async def forget(self, keys: Sequence[str]) -> None: ...


async def _never() -> bool:
    return False


def _topic_of(item: CoreInput) -> str:
    return getattr(item, "topic", "") or type(item).__name__


@dataclass(slots=True)
class _Delivery:
    item: CoreInput
    mid: int  # the broker's handle for the acknowledgement: MQTT packet id, AMQP delivery tag
    qos: int  # 0: nothing to acknowledge
    generation: int  # the connection (or channel) it came on: an acknowledgement is only valid on that one
    topic: str
    head: bytes  # the payload's first bytes, for a quarantine record
    size: int
    at: float = 0.0  # monotonic arrival time
    key: str | None = None  # redelivered: its key in the attempt journal
    failures: int = 0
    alone: bool = False
    handle: Any = None  # the adapter's own message object, when acknowledging needs it


class IntakePump:
    """Lanes, batching, poison handling and the commit-then-acknowledge pump; `_acknowledge` is the adapter's."""

    def __init__(self, handler: Handler, store_ok: Callable[[], Awaitable[bool]] | None,
                 journal: AttemptJournal | None) -> None:
        self._handler = handler
        self._store_ok = store_ok or _never
        self._journal = journal
        self._loop: asyncio.AbstractEventLoop | None = None
        # Filled from the adapter's thread or loop (deque.append is thread-safe); the loop is woken once per
        # burst, not once per message (each call_soon_threadsafe costs a self-pipe write+read).
        # Alarms have their own lane: a flood of garbage, heartbeats or acks never queues ahead of them.
        self._alarms: deque[_Delivery] = deque()
        self._inbox: deque[_Delivery] = deque()
        self._inbox_ready = asyncio.Event()
        self._wake_scheduled = False
        self._in_progress = 0
        self.counters: Counter[str] = Counter()

    def _acknowledge(self, d: _Delivery) -> None:
        """Tells the broker `d` is committed (called on the loop, after the commit)."""
        raise NotImplementedError

    async def _acknowledge_all(self, batch: list[_Delivery]) -> None:
        for d in batch:
            try:
                self._acknowledge(d)
            except Exception:
                self.counters["ack_errors"] += 1
                log.exception("acknowledgement failed (the broker will redeliver)")

    def backlog(self) -> int:
        return len(self._alarms) + len(self._inbox) + self._in_progress

    @staticmethod
    def _refused(topic: str, payload: bytes, reason: str) -> Rejection:
        return Rejection("mqtt", printable(topic[:MAX_TOPIC_CHARS]), reason, excerpt(payload), len(payload), utcnow())

    def _enqueue(self, delivery: _Delivery, alarm: bool = False) -> None:
        (self._alarms if alarm else self._inbox).append(delivery)
        if not self._wake_scheduled:  # one loop wake-up per burst, not per message
            self._wake_scheduled = True
            self._call(self._wake)

    def _wake(self) -> None:
        # Runs on the loop. Cleared first: anything appended from now on schedules another wake-up,
        # and anything appended before is already in the inbox when the pump looks.
        self._wake_scheduled = False
        self._inbox_ready.set()

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _next_batch(self) -> list[_Delivery]:
        others = self._inbox
        if self._alarms and not (others and time.monotonic() - others[0].at > OTHERS_MAX_WAIT_S):
            return [self._alarms.popleft() for _ in range(min(MAX_BATCH, len(self._alarms)))]
        return [others.popleft() for _ in range(min(MAX_OTHER_BATCH, len(others)))]

    async def _pump(self) -> None:
        while True:
            if not (self._alarms or self._inbox):
                self._inbox_ready.clear()  # then re-check: a message appended after this sets it again
                if not (self._alarms or self._inbox):
                    await self._inbox_ready.wait()
                continue
            batch = self._next_batch()
            self._in_progress = len(batch)
            try:
                await self._settle(batch)
            finally:
                self._in_progress = 0
            await self._acknowledge_all(batch)
            # The writer's SQLite statements run on the loop without suspending (dispatch.sqlite_inline): without
            # this the next batch would start before the consoles were sent the one just committed.
            await asyncio.sleep(0)

    async def _settle(self, batch: list[_Delivery]) -> None:
        """Commits the batch; poison ends up as rejections. Returns when every message is settled."""
        redelivered = [d for d in batch if d.key is not None]
        if redelivered and self._journal is not None:
            await self._note_attempts(redelivered, solo=False)
        await self._commit([d for d in batch if not d.alone])
        for d in batch:
            if d.alone:  # a redelivered message tried before: alone, so a crash can be pinned on it
                await self._note_attempts([d], solo=True)
                await self._commit([d])
        if redelivered and self._journal is not None:
            try:
                await self._journal.forget([d.key for d in redelivered if d.key is not None])
            except Exception:
                log.warning("could not clear the intake attempt journal", exc_info=True)

    async def _note_attempts(self, ds: list[_Delivery], solo: bool) -> None:
        """Counts the attempt durably before it is made; quarantines what already took the core down."""
        assert self._journal is not None
        keys = [d.key for d in ds if d.key is not None]
        backoff = 0.2
        while True:
            try:
                before = await self._journal.attempt(keys, solo)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is down: nothing can be committed either; wait
                self.counters["journal_errors"] += 1
                log.warning("intake attempt journal unavailable (%s); waiting", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        for d in ds:
            tries, alone = before.get(d.key or "", (0, 0))
            log.info("redelivered message on %r (mid %d): tried %d times before, %d of them alone%s", d.topic,
                     d.mid, tries, alone, "; this try alone" if solo else "")
            if alone >= CRASHES_BEFORE_QUARANTINE and not isinstance(d.item, Rejection):
                self._quarantine(d, f"the core stopped {alone} times while handling it")
            elif tries >= 1 and not solo:
                d.alone = True

    def _quarantine(self, d: _Delivery, why: str) -> None:
        self.counters["quarantined"] += 1
        log.error("quarantining the message on %r (mid %d): %s", d.topic, d.mid, why)
        d.item = Rejection("mqtt", printable(d.topic[:MAX_TOPIC_CHARS]), f"quarantined: {why}"[:400],
                           excerpt(d.head), d.size, utcnow())

    async def _commit(self, ds: list[_Delivery]) -> None:
        """Settles every delivery in ds: committed, or stored as a rejection if it fails alone while the
        database is healthy. While the database is down it waits; nothing is acknowledged meanwhile."""
        backoff = 0.2
        while ds:
            failed: Mapping[int, Exception]
            try:
                failed = await self._handler([d.item for d in ds]) or {}
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failed = dict.fromkeys(range(len(ds)), exc)
            if not failed:
                return
            pending = [ds[i] for i in sorted(failed)]
            first = failed[min(failed)]
            if not await self._store_ok():
                self.counters["store_down_retries"] += 1
                log.warning("database unavailable; %d messages wait (%s)", len(pending), type(first).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                ds = pending
                continue
            if len(pending) > 1:  # split until the failing message is alone; the rest commits in few transactions
                half = len(pending) // 2
                await self._commit(pending[:half])
                await self._commit(pending[half:])
                return
            d = pending[0]
            d.failures += 1
            self.counters["failures"] += 1
            if isinstance(d.item, Rejection):  # even its rejection cannot be stored: keep it and wait
                log.error("cannot store a rejection for %r: %s", d.topic, first)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            elif d.failures >= POISON_AFTER:
                self._quarantine(d, f"failed {d.failures} times: {type(first).__name__}: {first}".splitlines()[0])
            else:
                log.warning("message on %r failed (%s); trying it again", _topic_of(d.item), type(first).__name__)
            ds = [d]
