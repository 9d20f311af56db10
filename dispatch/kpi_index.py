"""KPI facts kept current by following the record: each look folds only what was committed since the last one.

The record is append-only and written by one writer, so its ids grow in commit order: a watermark (the last
folded id) is all the state needed to catch up. The index's own thread reads (SQLite: straight from the file
through a read-only connection; PostgreSQL: the async driver, only the columns the fold reads, no per-row type
processing), folds and evaluates; it owns the facts, so no lock is needed and the event loop never runs KPI
arithmetic. Identical requests share one computation, an answer is reused for `max_age_s` (2 s) while the record
grows, and its JSON is encoded once, on that thread.

Memory grows with the record (per incident a few numpy slots and its facts, per unit mention and fault an int):
about 100 MB per million entries. After a start the facts are rebuilt in the background (`follow`, paced); a
request that finds more than `max_backlog` entries still to fold is answered 503 with Retry-After (`Behind`)
and starts that background catch-up, rather than waiting minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, String, case, func, null, select, type_coerce

from config.hazards import HazardsConfig
from dispatch.db import Database
from dispatch.kpi_facts import DATA_ACTIONS, KpiFacts
from dispatch.models import RecordEntry

log = logging.getLogger(__name__)

ANSWERS_KEPT = 32
SQLITE_READ = ("SELECT id, incident_id, hazard_id, action, actor, at, json_extract(data, '$.unit_id'), "
               "CASE WHEN action IN (" + ", ".join(f"'{a}'" for a in sorted(DATA_ACTIONS)) + ") THEN data END "
               "FROM records WHERE id > ? ORDER BY id LIMIT ?")
CHUNK = 5_000  # rows per read: each read's row objects are built on the event loop


class Behind(Exception):
    """The index is far behind the record (just started, or an alarm storm since the last look): it catches up in
    the background, paced, and the request is answered 503 with Retry-After instead of waiting minutes."""

    def __init__(self, behind: int, retry_after_s: int) -> None:
        super().__init__(f"KPIs are being brought up to date: {behind:,} record entries to go; "
                         f"retry in {retry_after_s} s")
        self.behind = behind
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Answer:
    """One computed answer: the KPIs and their JSON (encoded once, off the event loop). Shared: do not change."""

    as_of: float  # time.monotonic() when the record was read
    result: dict[str, Any]
    body: bytes


class KpiIndex:
    """The record's KPI facts, kept current; `kpis()` answers a period from them."""

    def __init__(self, db: Database, chunk: int = CHUNK, max_age_s: float = 2.0, max_backlog: int = 20_000,
                 pause_s: float = 0.05) -> None:
        self.db = db
        self.chunk = chunk
        self.max_age_s = max_age_s
        self.max_backlog = max_backlog  # a request finding more entries to fold gets Behind (503)
        self.pause_s = pause_s  # between chunks of a background catch-up
        self.rate = 20_000.0  # entries folded per second in background catch-ups (measured; for Retry-After)
        self._follow: asyncio.Task[None] | None = None
        self._follow_since, self._follow_from = 0.0, 0
        self.facts = KpiFacts()
        self.watermark = 0  # id of the last record entry folded in
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kpi")
        self._catching_up = asyncio.Lock()
        self._inflight: dict[tuple[Any, ...], asyncio.Future[Answer]] = {}
        self._answers: OrderedDict[tuple[Any, ...], Answer] = OrderedDict()  # the most recent ones
        self._sqlite = db.dialect == "sqlite"
        path = db.engine.url.database if self._sqlite else None
        # SQLite: the index's thread reads the file itself (a read-only connection; WAL readers never block the
        # writer), so following the record costs the event loop nothing at all
        self._sqlite_uri = Path(path).resolve().as_uri() + "?mode=ro" if path and path != ":memory:" else None
        self._conn: sqlite3.Connection | None = None  # used on the index's thread only

    def close(self) -> None:
        if self._follow is not None:
            self._follow.cancel()
        self._thread.submit(self._close_conn)
        self._thread.shutdown(wait=False, cancel_futures=False)

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ------------------------------------------------------------ following the record

    def _query(self, after: int, chunk: int) -> Any:
        """Only the columns the fold reads, as the driver gives them: no per-row type processing on the event
        loop (SQLite's datetime text and the JSON text are parsed on the index's thread)."""
        e = RecordEntry
        at = type_coerce(e.at, String) if self._sqlite else type_coerce(e.at, DateTime(timezone=True))
        return (select(e.id, e.incident_id, e.hazard_id, e.action, e.actor, at, e.data["unit_id"].as_string(),
                       case((e.action.in_(DATA_ACTIONS), type_coerce(e.data, String)), else_=null()))
                .where(e.id > after).order_by(e.id).limit(chunk))

    def _read_and_fold(self, after: int, chunk: int) -> tuple[int, int]:
        """SQLite, on the index's thread: one chunk read straight from the file and folded; (count, last id)."""
        rows = self._sqlite_conn().execute(SQLITE_READ, (after, chunk)).fetchall()
        self._fold(rows)
        return len(rows), rows[-1][0] if rows else after

    def _fold(self, rows: Sequence[Any]) -> None:
        add, sqlite, loads = self.facts.add, self._sqlite, json.loads
        for _id, incident_id, hazard_id, action, actor, at, unit, data in rows:
            if sqlite:
                at = datetime.fromisoformat(at).replace(tzinfo=UTC)
            elif at.tzinfo is None:
                at = at.replace(tzinfo=UTC)
            if isinstance(data, str | bytes):  # (asyncpg's JSON codec may have decoded it already)
                data = loads(data)
            add(incident_id, hazard_id, action, actor, at, unit, data)
        self.facts.flush()  # columns now, on this thread, rather than in the next request

    async def catch_up(self, pause_s: float = 0.0, chunk: int | None = None) -> int:
        """Folds every entry committed since the last call; returns how many. `pause_s` between chunks (of
        `chunk` entries) paces a background warm-up so it takes a small share of the machine."""
        loop = asyncio.get_running_loop()
        chunk = chunk or self.chunk
        folded = 0
        async with self._catching_up:
            while True:
                if self._sqlite_uri is not None:
                    n, last = await loop.run_in_executor(self._thread, self._read_and_fold, self.watermark, chunk)
                else:
                    async with self.db.session() as s:
                        rows = (await s.execute(self._query(self.watermark, chunk))).all()
                    if rows:
                        await loop.run_in_executor(self._thread, self._fold, rows)
                    n, last = len(rows), rows[-1][0] if rows else self.watermark
                if not n:
                    break
                self.watermark = last
                folded += n
                if n < chunk:
                    break
                if pause_s:
                    await asyncio.sleep(pause_s)
        return folded

    def follow(self) -> asyncio.Task[None]:
        """Catches up in the background, paced (at start: the whole record), unless already doing so."""
        if self._follow is None or self._follow.done():
            self._follow = asyncio.create_task(self._paced_catch_up(), name="kpi-catch-up")
        return self._follow

    async def _paced_catch_up(self) -> None:
        t = self._follow_since = time.monotonic()
        self._follow_from = self.watermark
        try:
            n = await self.catch_up(self.pause_s)
        except Exception:
            log.exception("KPI index catch-up failed; the next request tries again")
            return
        if n >= self.chunk:
            self.rate = max(1_000.0, n / max(time.monotonic() - t, 1e-3))
        log.info("KPI index: %s record entries folded (up to id %s)", n, self.watermark)

    def _eta(self, behind: int) -> int:
        """Seconds until a background catch-up is through `behind` entries, from its pace so far."""
        rate, elapsed = self.rate, time.monotonic() - self._follow_since
        if self._follow is not None and not self._follow.done() and elapsed > 1:
            rate = max(1_000.0, (self.watermark - self._follow_from) / elapsed)
        return max(1, min(60, round(behind / rate)))

    async def backlog(self) -> int:
        """Record entries not folded yet (one indexed query; SQLite: on the index's own connection)."""
        last: int | None
        if self._sqlite_uri is not None:
            last = await asyncio.get_running_loop().run_in_executor(self._thread, self._last_id_sqlite)
        else:
            async with self.db.session() as s:
                last = await s.scalar(select(func.max(RecordEntry.id)))
        return max(0, (last or 0) - self.watermark)

    def _last_id_sqlite(self) -> int:
        row = self._sqlite_conn().execute("SELECT max(id) FROM records").fetchone()
        return int(row[0] or 0)

    def _sqlite_conn(self) -> sqlite3.Connection:
        if self._conn is None:
            assert self._sqlite_uri is not None
            self._conn = sqlite3.connect(self._sqlite_uri, uri=True)
            self._conn.execute("PRAGMA busy_timeout=5000")
        return self._conn

    # ------------------------------------------------------------ answering

    async def kpis(self, start: datetime, end: datetime, label: str, cfg: HazardsConfig, units: dict[str, str],
                   admit: Callable[[], AbstractAsyncContextManager[None]] | None = None,
                   clock: Callable[[], datetime] | None = None,
                   only_units: frozenset[str] | None = None) -> Answer:
        """The KPIs of [start, end) (`label` names the period in the answer), as of at most `max_age_s` ago: the
        same answer is reused that long, so 16 assessors refreshing while alarms pour in cost one computation,
        not sixteen a second. A request for what is being computed shares that answer; only a new computation
        goes through `admit` (the console's bounded heavy-work limiter). `clock` gives the "now" notices are due
        by (default: the real clock). `only_units`: the KPIs of these units' work only (a station's, a brigade's).
        """
        key = (start, end, label, cfg.targets.model_dump_json(), tuple(r.model_dump_json() for r in cfg.scoring),
               tuple(sorted(units.items())), None if only_units is None else tuple(sorted(only_units)))
        recent = self._answers.get(key)
        if recent is not None and time.monotonic() - recent.as_of < self.max_age_s:
            return recent
        fut = self._inflight.get(key)
        if fut is not None:
            return await asyncio.shield(fut)
        async with admit() if admit is not None else contextlib.nullcontext():
            fut = self._inflight.get(key)  # started by another request while this one waited for its turn
            if fut is None:
                fut = asyncio.ensure_future(self._compute(key, start, end, label, cfg, units, clock, only_units))
                self._inflight[key] = fut
                fut.add_done_callback(lambda _f: self._inflight.pop(key, None))
            return await asyncio.shield(fut)

    async def _compute(self, key: tuple[Any, ...], start: datetime, end: datetime, label: str, cfg: HazardsConfig,
                       units: dict[str, str], clock: Callable[[], datetime] | None = None,
                       only_units: frozenset[str] | None = None) -> Answer:
        as_of = time.monotonic()
        behind = await self.backlog()
        if behind > self.max_backlog:  # (every request sharing this computation gets the 503)
            self.follow()
            raise Behind(behind, self._eta(behind))
        await self.catch_up()

        now = clock() if clock is not None else datetime.now(UTC)

        def evaluate() -> Answer:
            result = self.facts.evaluate(start, end, cfg, units, now, only_units)
            result["period"] = label
            return Answer(as_of, result, json.dumps(result, ensure_ascii=False).encode())

        answer = await asyncio.get_running_loop().run_in_executor(self._thread, evaluate)
        self._answers[key] = answer
        self._answers.move_to_end(key)
        while len(self._answers) > ANSWERS_KEPT:
            self._answers.popitem(last=False)
        return answer
