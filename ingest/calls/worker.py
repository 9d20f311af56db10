"""Call media in worker processes, away from the core's event loop.

A call's media (ingest.calls.room: WebRTC, mixing, relaying, recording) costs about a tenth of a core; in the core's
own process its event loop would share that work with alarm intake. So the rooms live in `processes` worker
processes (spawned, one asyncio loop each); the core keeps the calls' state, rules and record (dispatch.calls) and
drives each room through a RemoteRoom: the same methods, as messages over a pipe. A worker pushes each
participant's connection state as it changes and a status (connection state, seconds since its last audio frame,
frames heard, whether it sends audio) every STATUS_S, which the RemoteRoom answers from without a round trip.

Workers start with the first call and take new rooms least-loaded first. A worker that dies fails its rooms'
participants (the calls then end as no_media_path or dropped, told and recorded as any failure) and is started
again for the next call. A worker whose core goes away (its pipe closes) closes its rooms and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ingest.calls.recorder import Recording
from ingest.calls.room import BadOffer, IceServer, MediaRoom, StateFn

log = logging.getLogger(__name__)

STATUS_S = 0.25
REQUEST_TIMEOUT_S = 60.0

# parent → worker: ("call", request id, room id, op, args) | ("open", room id) ; worker → parent: ("reply", id, ok,
# value) | ("state", room id, key, state) | ("status", room id, {key: (state, seconds since audio, frames, sends)})
Status = dict[str, tuple[str | None, float | None, int, bool]]


class RemoteRoom:
    """A MediaRoom in a worker process (dispatch.calls' Room)."""

    def __init__(self, worker: _Worker, room_id: str, on_state: StateFn) -> None:
        self.worker = worker
        self.id = room_id
        self.on_state = on_state
        self.status: Status = {}
        self.dead = False

    async def join(self, key: str, offer_sdp: str, *, sends_video: bool) -> str:
        answer: str = await self.worker.request(self, "join", key, offer_sdp, sends_video)
        return answer

    async def leave(self, key: str) -> None:
        await self.worker.request(self, "leave", key)
        self.status.pop(key, None)

    def start_recording(self, path: Path) -> None:
        self.worker.post(self, "start_recording", path)

    async def close(self) -> Recording | None:
        try:
            rec: Recording | None = await self.worker.request(self, "close")
            return rec
        finally:
            self.worker.rooms.pop(self.id, None)

    async def snapshot_jpeg(self) -> bytes | None:
        data: bytes | None = await self.worker.request(self, "snapshot_jpeg")
        return data

    def state(self, key: str) -> str | None:
        return self.status.get(key, (None, None, 0, False))[0]

    def heard(self, key: str) -> tuple[float, int] | None:
        _, age, frames, _ = self.status.get(key, (None, None, 0, False))
        return None if age is None else (age, frames)

    def sends_audio(self, key: str) -> bool:
        return self.status.get(key, (None, None, 0, False))[3]

    def _died(self) -> None:
        """Its worker is gone: every participant's media failed."""
        if self.dead:
            return
        self.dead = True
        for key in list(self.status):
            self.status[key] = ("failed", None, 0, False)
            self.on_state(key, "failed")


class WorkerGone(RuntimeError):
    """The media worker process ended."""


class _Worker:
    """The core's side of one worker process."""

    def __init__(self, number: int, ice: list[IceServer]) -> None:
        # A fresh interpreter running this module (not a fork of the running core, not a spawn that would import
        # the core's __main__): it imports only the media code and talks over a socket pair.
        mine, theirs = socket.socketpair()
        self.name = f"call-media-{number}"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))  # the core's own modules
        self.proc = subprocess.Popen([sys.executable, "-m", "ingest.calls.worker", str(theirs.fileno())],
                                     pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env)
        theirs.close()
        self.conn = Connection(mine.detach())
        self.conn.send(("init", ice))
        self.rooms: dict[str, RemoteRoom] = {}
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.ids = itertools.count(1)
        self.alive = True
        self.loop = asyncio.get_running_loop()
        self.loop.add_reader(self.conn.fileno(), self._readable)

    def open(self, room: RemoteRoom) -> None:
        self.rooms[room.id] = room
        self._send(("open", room.id))

    def post(self, room: RemoteRoom, op: str, *args: Any) -> None:
        self._send(("call", 0, room.id, op, args))

    async def request(self, room: RemoteRoom, op: str, *args: Any) -> Any:
        if not self.alive:
            raise WorkerGone("the call's media process has ended")
        rid = next(self.ids)
        fut: asyncio.Future[Any] = self.loop.create_future()
        self.pending[rid] = fut
        self._send(("call", rid, room.id, op, args))
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await fut
        finally:
            self.pending.pop(rid, None)

    def _send(self, msg: tuple[Any, ...]) -> None:
        try:
            self.conn.send(msg)
        except (OSError, ValueError):
            self._gone()

    def _readable(self) -> None:
        try:
            while self.conn.poll():
                self._handle(self.conn.recv())
        except (EOFError, OSError):
            self._gone()

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "reply":
            _, rid, ok, value = msg
            fut = self.pending.get(rid)
            if fut is not None and not fut.done():
                if ok:
                    fut.set_result(value)
                else:
                    fut.set_exception(BadOffer(value) if value.startswith("BadOffer:") else RuntimeError(value))
        elif kind == "state":
            _, room_id, key, state = msg
            room = self.rooms.get(room_id)
            if room is not None:
                old = room.status.get(key, (None, None, 0, False))
                room.status[key] = (state, *old[1:])
                room.on_state(key, state)
        elif kind == "status":
            _, room_id, status = msg
            room = self.rooms.get(room_id)
            if room is not None:
                room.status = status

    def _gone(self) -> None:
        if not self.alive:
            return
        self.alive = False
        with contextlib.suppress(Exception):
            self.loop.remove_reader(self.conn.fileno())
        log.error("call media worker %s ended (exit code %s): its calls lose their media", self.name,
                  self.proc.poll())
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(WorkerGone("the call's media process has ended"))
        for room in list(self.rooms.values()):
            room._died()
        self.rooms.clear()

    async def stop(self) -> None:
        if self.alive:
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.conn.fileno())
            self.alive = False
        self.conn.close()  # the worker closes its rooms and exits
        try:
            await asyncio.to_thread(self.proc.wait, 10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 5)


class MediaWorkers:
    """The worker processes of the core's calls; `room(on_state)` makes a room in the least-loaded one."""

    def __init__(self, processes: int, ice: list[IceServer] | None = None) -> None:
        self.processes = max(1, processes)
        self.ice = list(ice or [])
        self.workers: list[_Worker | None] = [None] * self.processes
        self.ids = itertools.count(1)

    def room(self, on_state: StateFn) -> RemoteRoom:
        for i, w in enumerate(self.workers):
            if w is None or not w.alive:
                self.workers[i] = _Worker(i, self.ice)
        worker = min((w for w in self.workers if w is not None), key=lambda w: len(w.rooms))
        room = RemoteRoom(worker, f"r{next(self.ids)}", on_state)
        worker.open(room)
        return room

    async def close(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers if w is not None), return_exceptions=True)
        self.workers = [None] * self.processes


# ---------------------------------------------------------------- the worker process


def worker_main(fd: int) -> None:  # pragma: no cover - runs in the worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the core stops its workers (Ctrl-C reaches the whole group)
    logging.basicConfig(level=os.environ.get("FIRELINK_CALLS_LOG", "WARNING"),
                        format="%(asctime)s %(levelname)s call-media %(name)s: %(message)s")
    conn = Connection(fd)
    kind, ice = conn.recv()
    assert kind == "init"
    asyncio.run(_serve(conn, ice))


async def _serve(conn: Connection, ice: list[IceServer]) -> None:  # pragma: no cover - runs in the worker
    loop = asyncio.get_running_loop()
    rooms: dict[str, MediaRoom] = {}
    done = asyncio.Event()
    tasks: set[asyncio.Task[None]] = set()

    def send(msg: tuple[Any, ...]) -> None:
        try:
            conn.send(msg)
        except (OSError, ValueError):
            done.set()

    def on_state(room_id: str) -> StateFn:
        return lambda key, state: send(("state", room_id, key, state))

    async def call(rid: int, room_id: str, op: str, args: tuple[Any, ...]) -> None:
        room = rooms.get(room_id)
        try:
            if room is None:
                raise RuntimeError(f"no room {room_id}")
            if op == "join":
                key, sdp, sends_video = args
                value: Any = await room.join(key, sdp, sends_video=sends_video)
            elif op == "leave":
                await room.leave(args[0])
                value = None
            elif op == "start_recording":
                room.start_recording(args[0])
                value = None
            elif op == "snapshot_jpeg":
                value = await room.snapshot_jpeg()
            elif op == "close":
                rooms.pop(room_id, None)
                value = await room.close()
            else:
                raise RuntimeError(f"unknown operation {op}")
        except BadOffer as exc:
            if rid:
                send(("reply", rid, False, f"BadOffer: {exc}"))
            return
        except Exception as exc:
            logging.getLogger(__name__).exception("call media %s %s failed", room_id, op)
            if rid:
                send(("reply", rid, False, f"{type(exc).__name__}: {exc}"))
            return
        if rid:
            send(("reply", rid, True, value))

    def readable() -> None:
        try:
            while conn.poll():
                msg = conn.recv()
                if msg[0] == "open":
                    rooms[msg[1]] = MediaRoom(ice, on_state(msg[1]))
                elif msg[0] == "call":
                    task = asyncio.create_task(call(*msg[1:]))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except (EOFError, OSError):
            done.set()

    loop.add_reader(conn.fileno(), readable)

    async def report() -> None:
        while True:
            await asyncio.sleep(STATUS_S)
            for room_id, room in list(rooms.items()):
                status: Status = {}
                for key in room.peers:
                    heard = room.heard(key)
                    status[key] = (room.state(key), heard[0] if heard else None, heard[1] if heard else 0,
                                   room.sends_audio(key))
                send(("status", room_id, status))

    reporter = asyncio.create_task(report())
    await done.wait()
    reporter.cancel()
    loop.remove_reader(conn.fileno())
    await asyncio.gather(*(room.close() for room in rooms.values()), return_exceptions=True)


if __name__ == "__main__":  # pragma: no cover - the worker process (see _Worker)
    worker_main(int(sys.argv[1]))
