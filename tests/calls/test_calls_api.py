"""Calls through the real routes and media: aiortc peers play the phone, the officer and the brigade.

Media is real (WebRTC over loopback UDP, Opus and VP8, the server's mixer and recorder); what each side hears
is proven by muting the others (the energy received comes and goes with one speaker)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import pytest

from console.appkeys import EVIDENCE
from tests.calls.support import energy_gain, falls_silent, join, listener, mute, peers, phone, track_seconds, until
from tests.support import Api, Broker, RunningApp, WsClient, base_config, running_app, ws_client

SPEECH = 50.0  # energy of a tone heard for a second is in the thousands; silence stays near 0


@pytest.fixture
async def app(broker: Broker, sqlite_url: str, tmp_path: Path) -> AsyncIterator[RunningApp]:
    cfg = base_config(sqlite_url, broker, video={"evidence_dir": str(tmp_path / "evidence")},
                      calls={"ring_timeout_s": 20, "connect_timeout_s": 8, "reconnect_grace_s": 20, "stall_s": 1.5})
    async with running_app(cfg) as running:
        yield running


async def _login(app: RunningApp, name: str) -> Api:
    api = Api(app.url)
    await api.login(name, f"{name}-pw")
    return api


async def _incident(officer: Api) -> int:
    await officer.post("/api/units/school-1/alarm", {"kind": "one_key"})
    incidents = await officer.get("/api/incidents")
    return int(next(i["id"] for i in incidents if i["unit_id"] == "school-1"))


def _call_event(state: str | None = None, **where: Any) -> Any:
    def match(e: dict[str, Any]) -> bool:
        if e["type"] != "call.updated" or (state is not None and e["call"]["state"] != state):
            return False
        return all(e["call"].get(k) == v for k, v in where.items())
    return match


async def _recorded(ws: WsClient) -> dict[str, Any]:
    event = await ws.next_matching(lambda e: e["type"] == "call.updated" and e["call"]["recording"], timeout=20)
    call: dict[str, Any] = event["call"]
    return call


async def test_officer_calls_the_phone_both_hear_and_see_the_call_is_recorded(app: RunningApp) -> None:
    officer, school = await _login(app, "officer"), await _login(app, "school")
    inc = await _incident(officer)
    cell, desk = phone(440), listener(880)
    async with ws_client(officer) as ws, ws_client(school) as phone_ws, peers(cell, desk):
        started = await officer.post(f"/api/incidents/{inc}/call")
        assert started["call"]["state"] == "ringing" and started["call"]["direction"] == "to_unit"
        assert started["ice_servers"] == []  # none configured: loopback needs none
        ring = await phone_ws.next_matching(_call_event("ringing"))  # the phone rings
        assert ring["call"]["started_by"] == "officer"
        await join(officer, inc, desk)
        await join(school, inc, cell, device="phone-a")
        connected = await ws.next_matching(_call_event("connected"))
        assert {p["username"] for p in connected["call"]["participants"]} == {"officer", "school"}
        assert connected["call"]["recording_on"] is True

        # The officer sees the phone's camera and hears it; the phone hears the officer.
        await until(lambda: desk.received.video_frames >= 15, what="the phone's video at the officer's")
        assert await energy_gain(desk, 1.0) > SPEECH
        assert await energy_gain(cell, 1.0) > SPEECH
        # What the officer hears is the phone: it falls silent when the phone does (and the other way round).
        mute(cell)
        await falls_silent(desk)
        assert await energy_gain(cell, 1.0) > SPEECH  # the officer still talks
        mute(cell, False)
        mute(desk)
        await falls_silent(cell)
        assert await energy_gain(desk, 1.0) > SPEECH

        # The officer asks the phone to switch camera; only the phone is told.
        await officer.post(f"/api/incidents/{inc}/call/control", {"action": "switch_camera"})
        control = await phone_ws.next_matching(lambda e: e["type"] == "call.control")
        assert control["action"] == "switch_camera" and control["incident_id"] == inc

        # Snapshot to evidence: the phone's current picture.
        status, snap = await officer.request("POST", f"/api/incidents/{inc}/call/snapshot", {})
        assert status == 201 and snap["kind"] == "call_snapshot", snap

        hung = await officer.post(f"/api/incidents/{inc}/call/hangup")
        assert hung["state"] == "ended" and hung["reason"] == "hangup" and hung["ended_by"] == "officer"
        call = await _recorded(ws)
    duration = call["duration_s"]
    assert duration > 3

    # In the record: who rang, who joined, connected, ended with its duration; the recording's hash.
    detail = await officer.get(f"/api/incidents/{inc}")
    timeline = [(e["action"], e["actor"], e["data"]) for e in detail["timeline"] if e["data"].get("call_id")]
    actions = [a for a, _, _ in timeline]
    assert actions[:1] == ["call.ringing"] and actions[-1] == "call.ended", actions
    assert {(a, who) for a, who, _ in timeline if a == "call.joined"} == {("call.joined", "officer"),
                                                                         ("call.joined", "school")}
    assert "call.connected" in actions
    ended = timeline[-1][2]
    assert ended["reason"] == "hangup" and ended["connected"] is True and ended["duration_s"] == duration
    saved = [e["data"] for e in detail["timeline"] if e["action"] == "evidence.saved" and e["data"]["kind"] == "call"]
    assert len(saved) == 1 and saved[0]["file"] == call["recording"]["file"]

    # Listed as evidence, served as video/webm with Range, its bytes hashing to the recorded SHA-256.
    listed = await officer.get(f"/api/incidents/{inc}/evidence")
    item = next(f for f in listed["files"] if f["kind"] == "call")
    assert item["sha256"] == saved[0]["sha256"] and item["url"] == f"/api/evidence/{item['file']}"
    async with officer.http.get(app.url + item["url"], headers={"Range": "bytes=0-99"}) as resp:
        assert resp.status == 206 and resp.headers["Content-Type"] == "video/webm"
        assert len(await resp.read()) == 100
    async with officer.http.get(app.url + item["url"]) as resp:
        data = await resp.read()
    assert hashlib.sha256(data).hexdigest() == item["sha256"]
    path = Path(app.cfg.video.evidence_dir) / item["file"]
    with av.open(str(path)) as container:
        kinds = {s.type: s for s in container.streams}
        assert set(kinds) == {"audio", "video"}
        assert container.duration is not None
        length = container.duration / 1_000_000
        video_s, audio_s = track_seconds(kinds["video"]), track_seconds(kinds["audio"])
    assert abs(length - duration) <= 1.0, (length, duration)
    assert abs(video_s - duration) <= 1.0 and abs(audio_s - duration) <= 1.0, (video_s, audio_s, duration)
    # the folder is kept for calls' retention (at least 6 months), whatever video.retention_days says
    manifest = app.app[EVIDENCE].store.manifest(inc)
    assert manifest is not None and manifest["keep_until"] - manifest["created"] >= 183 * 86400 - 60
    for api in (officer, school):
        await api.close()


async def test_the_brigade_joins_after_accepting_and_is_heard_by_both(app: RunningApp) -> None:
    officer, school, brigade = [await _login(app, n) for n in ("officer", "school", "brigade")]
    inc = await _incident(officer)
    await officer.post(f"/api/incidents/{inc}/dispatch", {"agencies": ["fire"]})
    cell, desk, crew = phone(440), listener(880), listener(660)
    async with ws_client(officer) as ws, ws_client(brigade) as crew_ws, peers(cell, desk, crew):
        await officer.post(f"/api/incidents/{inc}/call")
        await join(officer, inc, desk)
        await join(school, inc, cell)
        await ws.next_matching(_call_event("connected"))
        # Before accepting the dispatch the brigade neither sees nor joins the call.
        status, _ = await brigade.request("GET", f"/api/incidents/{inc}/call")
        assert status == 403
        status, body = await brigade.request("POST", f"/api/incidents/{inc}/call/join", {"sdp": await crew.offer()})
        assert status == 403, body
        disp = next(d for d in (await officer.get(f"/api/incidents/{inc}"))["dispatches"] if d["agency"] == "fire")
        await brigade.post(f"/api/dispatches/{disp['id']}/ack")
        told = await crew_ws.next_matching(_call_event("connected"))  # accepted: now told about the call
        assert told["call"]["incident_id"] == inc
        crew2 = listener(660)
        async with peers(crew2):
            await join(brigade, inc, crew2)
            await until(lambda: crew2.received.video_frames >= 5, what="the phone's video at the brigade's")
            # The brigade alone speaks: the officer and the phone both hear it.
            mute(cell)
            mute(desk)
            await falls_silent(crew2)  # (the brigade hears neither now)
            assert await energy_gain(desk, 1.0) > SPEECH
            assert await energy_gain(cell, 1.0) > SPEECH
            mute(crew2)  # and it is the brigade they hear
            await falls_silent(desk)
            await falls_silent(cell)
            # The brigade leaves; the call goes on.
            left = await brigade.post(f"/api/incidents/{inc}/call/hangup")
            assert left["state"] == "connected"
            assert next(p for p in left["participants"] if p["username"] == "brigade")["state"] == "left"
        await school.post(f"/api/incidents/{inc}/call/hangup")
        await _recorded(ws)
    detail = await officer.get(f"/api/incidents/{inc}")
    assert [e["actor"] for e in detail["timeline"] if e["action"] in ("call.joined", "call.left")] == [
        "officer", "school", "brigade", "brigade"]
    for api in (officer, school, brigade):
        await api.close()
