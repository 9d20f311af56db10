"""The intake pump's scheduling: what a committed batch wakes (the consoles' event pumps) runs before the next batch."""

from __future__ import annotations

import asyncio
import contextlib

from ingest.contract import AlarmIn, CoreInput, utcnow
from ingest.intake_pump import IntakePump, _Delivery


def _alarm(n: int) -> _Delivery:
    item = AlarmIn(alarm_id=f"a{n}", unit_id="school-1", kind="fire", source="mqtt", received_at=utcnow())
    return _Delivery(item, mid=n, qos=1, generation=0, topic="t", head=b"", size=0)


class _Pump(IntakePump):
    def __init__(self, log: list[str], pushed: asyncio.Event) -> None:
        super().__init__(self._handle, None, None)
        self.log = log
        self.pushed = pushed
        self._loop = asyncio.get_running_loop()

    async def _handle(self, items: list[CoreInput]) -> None:
        # commits without suspending, as the writer's inline SQLite does, and wakes a console (dispatch.events)
        self.log.append(f"commit {len(items)}")
        if len(self.log) == 1:
            self._enqueue(_alarm(2), alarm=True)  # arrived during the commit: the next batch
        self.pushed.set()

    def _acknowledge(self, d: _Delivery) -> None:
        self.log.append(f"ack {d.mid}")


async def test_a_committed_batch_reaches_the_consoles_before_the_next_batch_is_committed() -> None:
    log: list[str] = []
    pushed = asyncio.Event()
    pump = _Pump(log, pushed)

    async def console() -> None:  # a WebSocket's pump: waits for the bus, then sends
        while True:
            await pushed.wait()
            pushed.clear()
            log.append("sent")

    tasks = [asyncio.create_task(console()), asyncio.create_task(pump._pump())]
    try:
        pump._enqueue(_alarm(1), alarm=True)
        for _ in range(50):  # loop turns, no time: both batches settle in a few
            await asyncio.sleep(0)
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert log == ["commit 1", "ack 1", "sent", "commit 1", "ack 2", "sent"]
