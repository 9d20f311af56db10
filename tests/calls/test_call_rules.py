"""Who may ring, join and see a call; how each failure is told (no answer, no media path, permission denied); a
dropped phone coming back into the same call, and a call ended when it does not."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from console.appkeys import CALLS
from ingest.calls.testsrc import ClientPeer
from tests.calls.support import join, listener, peers, phone, until
from tests.support import Api, Broker, RunningApp, base_config, running_app, ws_client

SDP = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"  # well-formed enough to reach the access checks
TURN_SECRET = "coturn-static-auth-secret-for-tests"
MakeApp = Callable[..., AbstractAsyncContextManager[RunningApp]]


@pytest.fixture
def make_app(broker: Broker, sqlite_url: str, tmp_path: Path) -> MakeApp:
    def make(**calls: Any) -> AbstractAsyncContextManager[RunningApp]:
        cfg = base_config(sqlite_url, broker, video={"evidence_dir": str(tmp_path / "evidence")}, calls=calls)
        return running_app(cfg)
    return make


@pytest.fixture
async def app(make_app: MakeApp) -> AsyncIterator[RunningApp]:
    async with make_app(ice_servers=[{"urls": ["turn:turn.example.org:3478?transport=udp"],
                                      "shared_secret": TURN_SECRET, "credential_ttl_s": 600}]) as running:
        yield running


async def _login(app: RunningApp, name: str) -> Api:
    api = Api(app.url)
    await api.login(name, f"{name}-pw")
    return api


async def _incident(officer: Api, unit: str = "school-1") -> int:
    await officer.post(f"/api/units/{unit}/alarm", {"kind": "one_key"})
    return int(next(i["id"] for i in await officer.get("/api/incidents") if i["unit_id"] == unit))


def _ended(e: dict[str, Any]) -> bool:
    return e["type"] == "call.updated" and e["call"]["state"] == "ended"


async def test_who_may_ring_join_and_see_a_call(app: RunningApp, caplog: pytest.LogCaptureFixture) -> None:
    officer, school, hotel, medic, assessor, brigade = [
        await _login(app, n) for n in ("officer", "school", "hotel", "medic", "assessor", "brigade")]
    caplog.set_level(logging.INFO)
    inc = await _incident(officer)
    base = f"/api/incidents/{inc}/call"
    # Nobody may join a call that is not ringing; an agency never starts one.
    assert (await school.request("POST", base + "/join", {"sdp": SDP}))[0] == 409
    assert (await brigade.request("POST", base))[0] == 403

    # The unit calls the command room (after its alarm): the consoles ring.
    async with ws_client(officer) as ws:
        status, started = await school.request("POST", base)
        assert status == 200 and started["call"]["direction"] == "to_command"
        ring = await ws.next_matching(lambda e: e["type"] == "call.updated")
        assert ring["call"]["state"] == "ringing" and ring["call"]["started_by"] == "school"
    # TURN credentials: made for the participant, valid for a while, never the secret itself.
    ice = started["ice_servers"]
    assert ice[0]["urls"] == ["turn:turn.example.org:3478?transport=udp"]
    expiry, user = ice[0]["username"].split(":")
    assert user == "school" and int(expiry) > 0
    mac = hmac.new(TURN_SECRET.encode(), ice[0]["username"].encode(), hashlib.sha1).digest()
    assert ice[0]["credential"] == base64.b64encode(mac).decode()
    assert TURN_SECRET not in caplog.text

    # Another unit, an agency without a dispatch (or before accepting it): refused; the assessor reads, no ICE.
    for api in (hotel, medic):
        assert (await api.request("GET", base))[0] == 403
        assert (await api.request("POST", base + "/join", {"sdp": SDP}))[0] == 403
    assert (await hotel.request("POST", base))[0] == 403
    await officer.post(f"/api/incidents/{inc}/dispatch", {"agencies": ["fire"]})
    assert (await brigade.request("POST", base + "/join", {"sdp": SDP}))[0] == 403
    status, seen = await assessor.request("GET", base)
    assert status == 200 and seen["call"]["state"] == "ringing" and seen["ice_servers"] == []
    assert (await assessor.request("POST", base + "/join", {"sdp": SDP}))[0] == 403
    assert (await assessor.request("POST", base + "/hangup", {}))[0] == 403

    # Bad input changes nothing: 400 with the reason.
    status, body = await officer.request("POST", base + "/join", {"sdp": "hello there"})
    assert status == 400 and "session description" in body["error"]
    status, body = await officer.request("POST", base + "/report", {"reason": "bored"})
    assert status == 400
    status, body = await officer.request("POST", base + "/control", {"action": "zoom"})
    assert status == 400
    assert (await officer.get(base))["call"]["participants"] == []

    # The command room declines; the record says so. A closed incident cannot be called.
    ended = await officer.post(base + "/hangup")
    assert ended["state"] == "ended" and ended["reason"] == "declined"
    await officer.post(f"/api/incidents/{inc}/close", {"outcome": "resolved", "note": ""})
    assert (await officer.request("POST", base))[0] == 409
    for api in (officer, school, hotel, medic, assessor, brigade):
        await api.close()


async def test_no_answer_and_no_media_path_are_told_with_their_reason(make_app: MakeApp) -> None:
    async with make_app(ring_timeout_s=1, connect_timeout_s=2) as app:
        officer, school = await _login(app, "officer"), await _login(app, "school")
        inc = await _incident(officer)
        base = f"/api/incidents/{inc}/call"
        desk = listener(880)
        async with ws_client(officer) as ws, peers(desk):
            await officer.post(base)
            await join(officer, inc, desk)
            ended = await ws.next_matching(_ended, timeout=10)
            assert ended["call"]["reason"] == "no_answer" and ended["call"]["connected_at"] is None

            # The phone answers but its media never arrives (an offer without candidates, never connected).
            await officer.post(base)
            desk2, cell = listener(880), phone()
            async with peers(desk2, cell):
                await join(officer, inc, desk2)
                sdp = "".join(line + "\r\n" for line in (await cell.offer()).split("\r\n")
                              if line and not line.startswith("a=candidate") and line != "a=end-of-candidates")
                status, body = await school.request("POST", base + "/join", {"sdp": sdp})
                assert status == 200, body
                # the phone's browser also says its microphone was refused: told at once, the call goes on
                reported = await school.post(base + "/report", {"reason": "permission_denied",
                                                                "detail": "NotAllowedError"})
                assert reported["failures"][-1] == {**reported["failures"][-1], "who": "school",
                                                    "reason": "permission_denied"}
                ended = await ws.next_matching(_ended, timeout=10)
            assert ended["call"]["reason"] == "no_media_path"
            assert [f["reason"] for f in ended["call"]["failures"]] == ["permission_denied", "no_media_path"]
        detail = await officer.get(f"/api/incidents/{inc}")
        failed = [(e["actor"], e["data"]["reason"]) for e in detail["timeline"] if e["action"] == "call.failed"]
        assert failed == [("school", "permission_denied"), ("system", "no_media_path")]
        reasons = [e["data"]["reason"] for e in detail["timeline"] if e["action"] == "call.ended"]
        assert reasons == ["no_answer", "no_media_path"]
        for api in (officer, school):
            await api.close()


async def test_a_dropped_phone_comes_back_into_the_same_call(make_app: MakeApp) -> None:
    async with make_app(stall_s=1, reconnect_grace_s=3) as app:
        officer, school = await _login(app, "officer"), await _login(app, "school")
        inc = await _incident(officer)
        base = f"/api/incidents/{inc}/call"
        desk, cell = listener(880), phone()
        async with ws_client(officer) as ws, peers(desk, cell):
            await officer.post(base)
            await join(officer, inc, desk)
            await join(school, inc, cell, device="phone-a")
            await ws.next_matching(lambda e: e["type"] == "call.updated" and e["call"]["state"] == "connected")
            await until(lambda: desk.received.video_frames >= 5, what="video")

            # The phone's network goes: nothing arrives any more (its connection is not closed, just silent).
            for sender in cell.pc.getSenders():
                sender.replaceTrack(None)

            def unit_state(state: str) -> Callable[[dict[str, Any]], bool]:
                return lambda e: e["type"] == "call.updated" and any(
                    p["side"] == "unit" and p["state"] == state for p in e["call"]["participants"])

            await ws.next_matching(unit_state("reconnecting"), timeout=10)
            # It comes back on a new connection: the same call, still connected, the video flows again.
            back = phone()
            async with peers(back):
                view = await join(school, inc, back, device="phone-a")
                assert view["state"] == "connected"
                await ws.next_matching(unit_state("connected"), timeout=10)
                frames = desk.received.video_frames
                await until(lambda: desk.received.video_frames >= frames + 10, what="video after the reconnect")
                # ... and goes again for good: the call ends as dropped once the grace has passed.
                await back.pc.close()
                ended = await ws.next_matching(_ended, timeout=15)
            assert ended["call"]["reason"] == "dropped"
            assert ended["call"]["recording_on"] is True
        detail = await officer.get(f"/api/incidents/{inc}")
        actions = [e["action"] for e in detail["timeline"] if e["action"].startswith("call.")]
        assert actions.count("call.connected") == 1  # one call throughout
        assert re.search(r"call\.reconnecting.*call\.reconnected.*call\.reconnecting.*call\.ended",
                         " ".join(actions)), actions
        for api in (officer, school):
            await api.close()


async def test_peer_helpers_offer_complete_descriptions() -> None:
    """(The aiortc peers gather before offering, as the browsers do before POSTing: no trickle ICE.)"""
    peer = ClientPeer(audio=None, receive_video=True)
    try:
        sdp = await peer.offer()
        assert "a=candidate" in sdp and "m=audio" in sdp and "m=video" in sdp
    finally:
        await peer.close()


async def test_a_media_process_that_dies_loses_its_calls_and_the_next_call_gets_a_new_one(make_app: MakeApp) -> None:
    async with make_app(reconnect_grace_s=2, media_processes=1) as app:
        officer, school = await _login(app, "officer"), await _login(app, "school")
        inc = await _incident(officer)
        base = f"/api/incidents/{inc}/call"
        desk, cell = listener(880), phone()
        async with ws_client(officer) as ws, peers(desk, cell):
            await officer.post(base)
            await join(officer, inc, desk)
            await join(school, inc, cell)
            await ws.next_matching(lambda e: e["type"] == "call.updated" and e["call"]["state"] == "connected")
            workers = app.app[CALLS].workers
            assert workers is not None and workers.workers[0] is not None
            os.kill(workers.workers[0].proc.pid, signal.SIGKILL)
            ended = await ws.next_matching(_ended, timeout=15)
            assert ended["call"]["reason"] == "dropped"
            # the next call has its media again
            await officer.post(base)
            desk2, cell2 = listener(880), phone()
            async with peers(desk2, cell2):
                await join(officer, inc, desk2)
                await join(school, inc, cell2)
                await ws.next_matching(lambda e: e["type"] == "call.updated" and e["call"]["state"] == "connected")
                await until(lambda: desk2.received.video_frames >= 5, what="video on the new media process")
                await officer.post(base + "/hangup")
        for api in (officer, school):
            await api.close()
