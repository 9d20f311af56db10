"""Live calls of an incident (issue 15): the command room, the unit's phone and the brigade talk and see the scene.

One call at a time per incident. Its life:

    ringing ──(the unit's phone and an officer both connected)──► connected ──► ended
       └──(nobody answers in ring_timeout_s, declined, no media path, ...)──────► ended

* An officer calls the unit (`to_unit`: every phone on the unit's page rings), or the unit's phone calls the
  command room after its alarm (`to_command`: the consoles ring). Each participant joins with one WebRTC offer
  (ingest.calls.room answers it); agencies may join once their dispatch is accepted, never start a call.
* Who may do what follows the incident's own rules (Core.check_visible): an officer within its stations, the unit
  only its own incident, an agency only an incident dispatched to it, and only after accepting the dispatch.
* Failures are told at once, each with its reason: `no_answer`, `no_media_path` (a participant's media did not
  connect within connect_timeout_s), `permission_denied` / `camera_denied` (reported by the browser). A phone
  that drops is `reconnecting` and may come back into the same call within reconnect_grace_s (`dropped` after).
* Every step is a record entry on the incident (call.ringing, call.joined, call.connected, call.reconnecting,
  call.reconnected, call.failed, call.left, call.ended with its duration) and a `call.updated` event. The
  recording (audio of all, video of the phone) is saved as the incident's evidence (kind `call`) with its SHA-256
  in the record, and its folder is kept at least `calls.retention_days`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol, get_args

from config.calls import CallsConfig
from dispatch import events as ev
from dispatch.actor import SYSTEM, Actor
from dispatch.core import Core
from dispatch.errors import BadRequest, Forbidden
from dispatch.events import Event
from dispatch.roles import with_power
from dispatch.state import DispatchStatus, IncidentStatus, TransitionError
from ingest.calls.recorder import Recording
from ingest.calls.room import BadOffer, IceServer, MediaRoom, StateFn
from ingest.calls.worker import MediaWorkers, WorkerGone
from ingest.cameras.evidence import EvidenceFile, EvidenceRecorder

log = logging.getLogger(__name__)

# Record actions of a call (the incident timeline's vocabulary).
RINGING = "call.ringing"
JOINED = "call.joined"
CONNECTED = "call.connected"
RECONNECTING = "call.reconnecting"
RECONNECTED = "call.reconnected"
FAILED = "call.failed"
LEFT = "call.left"
ENDED = "call.ended"

KIND = "call"  # the recording's evidence kind (GET /api/incidents/{id}/evidence)
SNAPSHOT_KIND = "call_snapshot"
ClientFailure = Literal["permission_denied", "camera_denied", "no_media_path", "media_error"]
CLIENT_FAILURES: tuple[str, ...] = get_args(ClientFailure)
ACCEPTED = frozenset({DispatchStatus.ACKNOWLEDGED.value, DispatchStatus.ON_SCENE.value})
COMMANDERS = with_power("act")
MONITOR_S = 0.25
KEEP_ENDED = 200  # ended calls remembered (GET shows the last one of an incident)


class Side(StrEnum):
    UNIT = "unit"  # the unit's phone
    COMMAND = "command"  # the command room's officers
    AGENCY = "agency"  # a linked agency (the brigade)


class CallsFull(Exception):
    """As many calls as configured are live (HTTP 503)."""


class Room(Protocol):
    """What a call needs of its media (ingest.calls.room.MediaRoom)."""

    async def join(self, key: str, offer_sdp: str, *, sends_video: bool) -> str: ...
    async def leave(self, key: str) -> None: ...
    def start_recording(self, path: Any) -> None: ...
    async def close(self) -> Recording | None: ...
    def state(self, key: str) -> str | None: ...
    def heard(self, key: str) -> tuple[float, int] | None: ...
    def sends_audio(self, key: str) -> bool: ...
    async def snapshot_jpeg(self) -> bytes | None: ...


RoomFactory = Callable[[StateFn], Room]


def side_of(actor: Actor) -> Side:
    if actor.role == "unit":
        return Side.UNIT
    if actor.role == "agency":
        return Side.AGENCY
    if actor.role in COMMANDERS:
        return Side.COMMAND
    raise Forbidden(f"role {actor.role} does not take part in calls")


def key_of(actor: Actor) -> str:
    """A participant's key: one unit phone at a time; each officer and each agency user by name."""
    side = side_of(actor)
    if side is Side.UNIT:
        return "unit"
    if side is Side.AGENCY:
        return f"agency:{actor.agency}:{actor.username}"
    return f"officer:{actor.username}"


@dataclass
class Participant:
    key: str
    username: str
    role: str
    side: Side
    agency: str | None
    joined_at: datetime
    device: str = ""  # the page that joined (a second phone answering takes the call over)
    state: str = "joining"  # joining | connected | reconnecting | left | failed
    offered_at: float = 0.0  # loop time of the latest offer (connect timeout)
    connected_once: bool = False
    lost_at: float | None = None  # loop time it went missing (reconnect grace)

    def view(self) -> dict[str, Any]:
        return {"username": self.username, "role": self.role, "side": self.side.value, "agency": self.agency,
                "state": self.state, "joined_at": self.joined_at.isoformat(), "device": self.device}


@dataclass
class Call:
    id: str
    incident_id: int
    unit_id: str
    direction: str  # to_unit | to_command
    started_by: str
    started_at: datetime
    room: Room
    agencies: set[str] = field(default_factory=set)  # agencies with an accepted dispatch (told, may join)
    state: str = "ringing"
    connected_at: datetime | None = None
    connected_mono: float | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None
    reason: str | None = None
    duration_s: float | None = None
    participants: dict[str, Participant] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)
    recording: dict[str, Any] | None = None  # {file, sha256, duration_s} once saved
    recording_on: bool = False
    ring_deadline: float = 0.0
    missing_since: dict[Side, float] = field(default_factory=dict)  # loop time a side lost its connected media
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    monitor: asyncio.Task[None] | None = None

    @property
    def live(self) -> bool:
        return self.state != "ended"

    @property
    def called(self) -> Side:
        """The side that was rung."""
        return Side.UNIT if self.direction == "to_unit" else Side.COMMAND

    def on(self, side: Side) -> list[Participant]:
        """This side's participants whose media is connected."""
        return [p for p in self.participants.values() if p.side is side and p.state == "connected"]

    def present(self, side: Side) -> list[Participant]:
        """This side's participants in the call (connected, joining or coming back)."""
        return [p for p in self.participants.values() if p.side is side and p.state in
                ("connected", "joining", "reconnecting")]

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id, "incident_id": self.incident_id, "unit_id": self.unit_id, "state": self.state,
            "direction": self.direction, "started_by": self.started_by, "started_at": self.started_at.isoformat(),
            "connected_at": self.connected_at.isoformat() if self.connected_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None, "ended_by": self.ended_by,
            "reason": self.reason, "duration_s": self.duration_s, "recording": self.recording,
            "recording_on": self.recording_on,
            "participants": [p.view() for p in self.participants.values()],
            "failures": list(self.failures),
        }


def _now_mono() -> float:
    return asyncio.get_running_loop().time()


class Calls:
    """The live calls of all incidents (in memory: a call is live media; its record and recording remain)."""

    def __init__(self, core: Core, cfg: CallsConfig, clock: Callable[[], datetime],
                 evidence: EvidenceRecorder | None, rooms: RoomFactory | None = None) -> None:
        self.core = core
        self.cfg = cfg
        self.clock = clock
        self.evidence = evidence
        servers = [IceServer(list(s.urls), s.username, s.credential.get_secret_value() if s.credential else None)
                   for s in cfg.ice_servers if s.shared_secret is None]
        self.workers = MediaWorkers(cfg.media_processes, servers) if cfg.media_processes and rooms is None else None
        self.rooms: RoomFactory = rooms or (self.workers.room if self.workers is not None
                                            else lambda on_state: MediaRoom(servers, on_state))
        self.live: dict[int, Call] = {}
        self.ended: dict[int, Call] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ access

    async def _allowed(self, incident_id: int, actor: Actor) -> tuple[str, str, set[str]]:
        """(unit id, incident status, agencies with an accepted dispatch) of an incident the actor may call
        about; NotFound / Forbidden otherwise."""
        async with self.core.db.session() as s:
            inc = await self.core.incident(s, incident_id)
            dispatches = (await self.core.dispatches_for(s, [inc.id])).get(inc.id, [])
        self.core.check_visible(actor, inc.unit_id, {d.agency for d in dispatches})
        accepted = {d.agency for d in dispatches if d.status in ACCEPTED}
        if actor.role == "agency" and actor.agency not in accepted:
            raise Forbidden("an agency joins a call once it has accepted the dispatch")
        return inc.unit_id, str(inc.status), accepted

    def _live(self, incident_id: int) -> Call:
        call = self.live.get(incident_id)
        if call is None:
            raise TransitionError("no call in progress on this incident")
        return call

    def ice_servers(self, actor: Actor) -> list[dict[str, Any]]:
        """The ICE servers for this participant's browser (TURN credentials made for it when configured so)."""
        return [s.for_client(actor.username, time.time()) for s in self.cfg.ice_servers]

    # ------------------------------------------------------------------ reads

    async def current(self, incident_id: int, actor: Actor) -> dict[str, Any] | None:
        """The incident's live call, else its last ended one (None: none since the core started)."""
        await self._allowed(incident_id, actor)
        call = self.live.get(incident_id) or self.ended.get(incident_id)
        return None if call is None else call.view()

    # ------------------------------------------------------------------ commands

    async def start(self, incident_id: int, actor: Actor) -> dict[str, Any]:
        """Rings the other side (an officer calls the unit; the unit calls the command room). A call already
        live is returned as it is (join it)."""
        side = side_of(actor)
        if side is Side.AGENCY:
            raise Forbidden("agencies join a call in progress; they do not start one")
        unit_id, status, accepted = await self._allowed(incident_id, actor)
        if status == IncidentStatus.CLOSED:
            raise TransitionError("the incident is closed")
        existing = self.live.get(incident_id)
        if existing is not None:
            return existing.view()
        if len(self.live) >= self.cfg.max_calls:
            raise CallsFull(f"{self.cfg.max_calls} calls are in progress (calls.max_calls)")
        call_id = uuid.uuid4().hex[:12]
        holder: list[Call] = []
        room = self.rooms(lambda key, state: self._media_state(holder, key, state))
        call = Call(call_id, incident_id, unit_id, "to_unit" if side is Side.COMMAND else "to_command",
                    actor.username, self.clock(), room, agencies=accepted)
        holder.append(call)
        call.ring_deadline = _now_mono() + self.cfg.ring_timeout_s
        self.live[incident_id] = call
        self.ended.pop(incident_id, None)
        try:
            await self._note(call, RINGING, actor, {"direction": call.direction})
        except BaseException:
            self.live.pop(incident_id, None)
            await room.close()
            raise
        call.monitor = asyncio.create_task(self._monitor(call), name=f"call-{call_id}")
        return call.view()

    async def join(self, incident_id: int, actor: Actor, offer_sdp: str, device: str = "") -> dict[str, Any]:
        """Answers a participant's WebRTC offer: {"type": "answer", "sdp": ..., "call": view}. A participant
        joining again (reconnect, reload) replaces its previous connection."""
        side = side_of(actor)
        _, _, accepted = await self._allowed(incident_id, actor)
        call = self._live(incident_id)
        async with call.lock:
            if not call.live:
                raise TransitionError("the call has ended")
            call.agencies |= accepted
            key = key_of(actor)
            known = call.participants.get(key)
            try:
                answer = await call.room.join(key, offer_sdp, sends_video=side is Side.UNIT)
            except BadOffer as exc:
                raise BadRequest(str(exc).removeprefix("BadOffer: ")) from None
            except WorkerGone:
                await self._end(call, "media_error", SYSTEM, locked=True)
                raise CallsFull("the call's media process ended; start the call again") from None
            now = _now_mono()
            if known is None or known.state in ("left", "failed"):
                first = known is None
                known = Participant(key, actor.username, actor.role, side, actor.agency, self.clock())
                call.participants[key] = known
                known.state = "joining"
                if first:
                    await self._note(call, JOINED, actor, {"side": side.value}, publish=False)
            elif known.state == "connected":  # a new connection from a participant that was connected (a reload)
                await self._lost(call, known, "new connection")
            known.device, known.offered_at, known.username = device, now, actor.username
            self._publish(call)
            return {"type": "answer", "sdp": answer, "call": call.view()}

    async def hangup(self, incident_id: int, actor: Actor) -> dict[str, Any]:
        """The unit or an officer ends the call (declines it while it rings); an agency user leaves it."""
        side = side_of(actor)
        await self._allowed(incident_id, actor)
        call = self._live(incident_id)
        if side is Side.AGENCY:
            async with call.lock:
                p = call.participants.get(key_of(actor))
                if p is not None and p.state != "left":
                    p.state = "left"
                    await call.room.leave(p.key)
                    await self._note(call, LEFT, actor, {"side": side.value})
            return call.view()
        reason = "hangup" if call.state != "ringing" else "declined" if side is call.called else "cancelled"
        await self._end(call, reason, actor)
        return call.view()

    async def report(self, incident_id: int, actor: Actor, reason: str, detail: str = "") -> dict[str, Any]:
        """A browser tells why it could not take part fully (microphone or camera refused, its ICE failed)."""
        if reason not in CLIENT_FAILURES:
            raise BadRequest(f"reason must be one of {', '.join(CLIENT_FAILURES)}")
        side = side_of(actor)
        await self._allowed(incident_id, actor)
        call = self._live(incident_id)
        async with call.lock:
            await self._failure(call, actor, actor.username, side, reason, detail[:200])
        return call.view()

    async def control(self, incident_id: int, actor: Actor, action: str) -> dict[str, Any]:
        """The command room asks the phone to switch its camera."""
        if side_of(actor) is not Side.COMMAND:
            raise Forbidden("only the command room controls the phone's camera")
        await self._allowed(incident_id, actor)
        call = self._live(incident_id)
        self.core.bus.publish(Event.of(ev.CallControl(incident_id=incident_id, call_id=call.id,
                                                      unit_id=call.unit_id, action=action)))
        return call.view()

    async def snapshot(self, incident_id: int, actor: Actor) -> EvidenceFile:
        """The phone's current picture saved as the incident's evidence (kind call_snapshot)."""
        if side_of(actor) is not Side.COMMAND:
            raise Forbidden("only the command room takes snapshots")
        await self._allowed(incident_id, actor)
        call = self._live(incident_id)
        if self.evidence is None:
            raise CallsFull("evidence is not available")
        data = await call.room.snapshot_jpeg()
        if data is None:
            raise TransitionError("no picture from the phone yet")
        now = time.time()
        name = f"call-{call.id}-snapshot-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}" \
               f"-{uuid.uuid4().hex[:4]}.jpg"
        return await self.evidence.save_file(incident_id, self._base(call), name, f"call-{call.id}", SNAPSHOT_KIND,
                                             data, now)

    # ------------------------------------------------------------------ media and timers

    def _media_state(self, holder: list[Call], key: str, state: str) -> None:
        if holder:
            self._spawn(self._on_media(holder[0], key, state))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _on_media(self, call: Call, key: str, state: str) -> None:
        async with call.lock:
            p = call.participants.get(key)
            if not call.live or p is None or p.state in ("left", "failed"):
                return
            if state == "connected":
                await self._connected(call, p)
            elif state in ("failed", "closed"):
                if p.connected_once:
                    await self._lost(call, p, "connection")
                else:
                    await self._no_media_path(call, p)

    async def _connected(self, call: Call, p: Participant) -> None:
        back = p.state == "reconnecting"
        p.state, p.lost_at = "connected", None
        if back:
            await self._note(call, RECONNECTED, SYSTEM, {"who": p.username, "side": p.side.value}, publish=False)
        p.connected_once = True
        if call.state == "ringing" and call.on(Side.UNIT) and call.on(Side.COMMAND):
            call.state = "connected"
            call.connected_at, call.connected_mono = self.clock(), _now_mono()
            self._start_recording(call)
            await self._note(call, CONNECTED, SYSTEM, {
                "participants": [x.username for x in call.participants.values() if x.state == "connected"],
                "recording": call.recording_on})
            return
        self._publish(call)

    async def _lost(self, call: Call, p: Participant, why: str) -> None:
        if p.state == "reconnecting":
            return
        p.state, p.lost_at = "reconnecting", _now_mono()
        await self._note(call, RECONNECTING, SYSTEM, {"who": p.username, "side": p.side.value, "why": why})

    async def _no_media_path(self, call: Call, p: Participant) -> None:
        p.state = "failed"
        await call.room.leave(p.key)
        await self._failure(call, SYSTEM, p.username, p.side, "no_media_path", "")
        if p.side is not Side.AGENCY and not call.present(p.side):
            await self._end(call, "no_media_path", SYSTEM, locked=True)

    async def _failure(self, call: Call, actor: Actor, who: str, side: Side, reason: str, detail: str) -> None:
        call.failures.append({"who": who, "side": side.value, "reason": reason, "at": self.clock().isoformat()})
        data: dict[str, Any] = {"who": who, "side": side.value, "reason": reason}
        if detail:
            data["detail"] = detail
        await self._note(call, FAILED, actor, data)

    async def _monitor(self, call: Call) -> None:
        """Ring timeout, connect timeouts, stalled media and the reconnect grace of one call."""
        while call.live:
            await asyncio.sleep(MONITOR_S)
            try:
                async with call.lock:
                    if call.live:
                        await self._check(call, _now_mono())
            except Exception:
                log.exception("call %s: monitor step failed", call.id)

    async def _check(self, call: Call, now: float) -> None:
        if call.state == "ringing" and now > call.ring_deadline and not call.present(call.called):
            await self._end(call, "no_answer", SYSTEM, locked=True)
            return
        room = call.room
        for p in list(call.participants.values()):
            heard = room.heard(p.key) if room.sends_audio(p.key) else None
            if p.state == "joining" and now - p.offered_at > self.cfg.connect_timeout_s:
                await self._no_media_path(call, p)
                if not call.live:
                    return
            elif p.state == "connected" and heard is not None and heard[0] > self.cfg.stall_s:
                await self._lost(call, p, "stalled")  # its connection looks up, but nothing comes through
            elif p.state == "reconnecting" and room.state(p.key) == "connected" and (
                    heard is None or heard[0] < 1.0) and p.lost_at is not None and now - p.lost_at > 1.0:
                await self._connected(call, p)  # media flows again on the same connection
        if call.state != "connected":
            return
        for side in (Side.UNIT, Side.COMMAND):
            if call.on(side):
                call.missing_since.pop(side, None)
            elif now - call.missing_since.setdefault(side, now) > self.cfg.reconnect_grace_s:
                await self._end(call, "dropped", SYSTEM, locked=True)
                return

    # ------------------------------------------------------------------ ending

    def _start_recording(self, call: Call) -> None:
        if not self.cfg.record or self.evidence is None:
            return
        folder = self.evidence.store.incident_dir(call.incident_id)
        name = f"call-{time.strftime('%Y%m%d-%H%M%S', time.localtime())}-{call.id}.webm"
        try:
            call.room.start_recording(folder / name)
            call.recording_on = True
        except Exception:
            log.exception("call %s: recording could not start", call.id)

    def _base(self, call: Call) -> dict[str, Any]:
        return {"incident_id": call.incident_id, "unit_id": call.unit_id, "opened_at": call.started_at.timestamp(),
                "created": time.time(), "hold": False, "files": []}

    async def _end(self, call: Call, reason: str, actor: Actor, *, locked: bool = False) -> None:
        if locked:
            await self._finish(call, reason, actor)
            return
        async with call.lock:
            await self._finish(call, reason, actor)

    async def _finish(self, call: Call, reason: str, actor: Actor) -> None:
        if not call.live:
            return
        call.state, call.reason, call.ended_by, call.ended_at = "ended", reason, actor.username, self.clock()
        if call.connected_mono is not None:
            call.duration_s = round(_now_mono() - call.connected_mono, 2)
        for p in call.participants.values():
            if p.state != "failed":
                p.state = "left"
        self.live.pop(call.incident_id, None)
        self.ended[call.incident_id] = call
        while len(self.ended) > KEEP_ENDED:
            self.ended.pop(next(iter(self.ended)))
        started = call.connected_at is not None
        await self._note(call, ENDED, actor, {"reason": reason, "connected": started, "duration_s": call.duration_s,
                                              "recorded": call.recording_on})
        if call.monitor is not None and call.monitor is not asyncio.current_task():
            call.monitor.cancel()
        self._spawn(self._close_media(call))

    async def _close_media(self, call: Call) -> None:
        """Closes the call's connections and saves its recording as evidence (hashed into the record)."""
        try:
            rec = await call.room.close()
        except Exception:
            log.exception("call %s: the recording could not be finished", call.id)
            return
        if rec is None or self.evidence is None:
            return
        ended = time.time()
        try:
            ef = await self.evidence.add_written(
                call.incident_id, self._base(call), rec.path, f"call-{call.id}", KIND, ended - rec.duration_s, ended,
                frames=rec.video_frames, keep_days=max(self.cfg.retention_days, self.evidence.video.retention_days))
        except Exception:
            log.exception("call %s: the recording could not be registered", call.id)
            return
        call.recording = {"file": ef.file, "sha256": ef.sha256, "duration_s": round(rec.duration_s, 2),
                          "url": f"/api/evidence/{ef.file}"}
        self._publish(call)

    async def close(self) -> None:
        """Ends every live call (the core is stopping); waits for their recordings."""
        for call in list(self.live.values()):
            await self._end(call, "shutdown", SYSTEM)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.workers is not None:
            await self.workers.close()

    async def follow(self) -> None:
        """Follows the incidents: a closed incident ends its call; a dispatch accepted during a call lets that
        agency see it (and join)."""
        with self.core.bus.subscribe([ev.INCIDENT_UPDATED, ev.DISPATCH_UPDATED]) as sub:
            async for event in sub:
                with contextlib.suppress(Exception):
                    await self._followed(event.payload())

    async def _followed(self, payload: ev.Payload) -> None:
        if isinstance(payload, ev.IncidentUpdated):
            inc = payload.incident
            call = self.live.get(int(inc.get("id", 0)))
            if call is not None and inc.get("status") == IncidentStatus.CLOSED:
                await self._end(call, "incident_closed", SYSTEM)
        elif isinstance(payload, ev.DispatchUpdated):
            call = self.live.get(payload.incident_id)
            d = payload.dispatch
            if call is not None and d.get("status") in ACCEPTED and d["agency"] not in call.agencies:
                call.agencies.add(str(d["agency"]))
                self._publish(call)

    # ------------------------------------------------------------------ record and events

    def _event(self, call: Call) -> Event:
        return Event.of(ev.CallUpdated(call=call.view(), unit_id=call.unit_id, agencies=sorted(call.agencies)))

    def _publish(self, call: Call) -> None:
        self.core.bus.publish(self._event(call))

    async def _note(self, call: Call, action: str, actor: Actor, data: dict[str, Any], *,
                    publish: bool = True) -> None:
        """One record entry on the incident (and, after it is committed, the call's new state as an event)."""
        async with self.core.writer.tx() as tx:
            self.core.record(tx, call.incident_id, action, actor, self.clock(), {"call_id": call.id, **data})
            if publish:
                tx.events.append(self._event(call))

