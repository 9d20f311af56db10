"""Heavy reads (KPIs, PDF documents, exports) run off the event loop and bounded, so no click delays an alarm.

One limiter per app: at most `workers` heavy requests run at once and at most `queue` wait for a turn; beyond
that a request is refused at once with 503 and `Retry-After` (``Busy``) instead of piling up memory and work.
PDFs are rendered in worker processes (WeasyPrint's layout is Python: in a thread it would hold the GIL the
event loop needs); lighter CPU work (CSV) runs on a thread pool.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from aiohttp import web

log = logging.getLogger(__name__)
T = TypeVar("T")


class Busy(Exception):
    """Every heavy slot is taken and the queue is full (HTTP 503 with Retry-After)."""

    def __init__(self, what: str, retry_after_s: int) -> None:
        super().__init__(f"busy: too many {what} requests at once; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class HeavyWork:
    def __init__(self, workers: int = 2, queue: int = 8, retry_after_s: int = 5) -> None:
        self.workers = workers
        self.queue = queue
        self.retry_after_s = retry_after_s
        self._slots = asyncio.Semaphore(workers)
        self.waiting = 0
        self.running = 0
        self.refused = 0
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="heavy")
        self._processes: ProcessPoolExecutor | None = None

    @asynccontextmanager
    async def slot(self, what: str) -> AsyncIterator[None]:
        """A turn to do heavy work: at once, after waiting in the bounded queue, or Busy."""
        if self._slots.locked() and self.waiting >= self.queue:
            self.refused += 1
            log.warning("refused a %s request: %s running, %s waiting", what, self.running, self.waiting)
            raise Busy(what, self.retry_after_s)
        self.waiting += 1
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()

    async def thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._threads, fn, *args)

    async def process(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn` and its arguments must pickle (module-level function, plain data)."""
        if self._processes is None:
            # spawn: a fork of a process with running threads (paho, aiosqlite, cameras) could inherit held locks
            self._processes = ProcessPoolExecutor(max_workers=self.workers,
                                                  mp_context=multiprocessing.get_context("spawn"))
        return await asyncio.get_running_loop().run_in_executor(self._processes, fn, *args)

    def stats(self) -> dict[str, int]:
        return {"workers": self.workers, "queue": self.queue, "running": self.running, "waiting": self.waiting,
                "refused": self.refused}

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        if self._processes is not None:
            self._processes.shutdown(wait=False, cancel_futures=True)




class Refusal(Protocol):
    retry_after_s: int


def busy_response(exc: Refusal) -> web.Response:
    return web.json_response({"error": str(exc), "retry_after_s": exc.retry_after_s}, status=503,
                             headers={"Retry-After": str(exc.retry_after_s)})
