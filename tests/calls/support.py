"""Call participants for the API tests: aiortc peers (ingest.calls.testsrc) signalling through the real routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import av

from ingest.calls.testsrc import ClientPeer, StampedVideo, ToneTrack
from tests.support import Api


async def join(api: Api, incident_id: int, peer: ClientPeer, device: str = "") -> dict[str, Any]:
    """Offers through POST .../call/join and takes the answer; returns the call's view."""
    status, body = await api.request("POST", f"/api/incidents/{incident_id}/call/join",
                                     {"sdp": await peer.offer(), "device": device})
    assert status == 200, body
    assert body["type"] == "answer"
    await peer.accept(body["sdp"])
    call: dict[str, Any] = body["call"]
    return call


def phone(freq: float = 440.0) -> ClientPeer:
    """The unit's phone: a tone for a voice, stamped frames for a camera."""
    return ClientPeer(audio=ToneTrack(freq), video=StampedVideo(15))


def listener(freq: float) -> ClientPeer:
    """An officer or the brigade: a tone for a voice; receives the phone's video."""
    return ClientPeer(audio=ToneTrack(freq), receive_video=True)


async def until(check: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    """Waits until `check()` holds (media counters have no event to await: they are polled)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def energy_gain(peer: ClientPeer, seconds: float) -> float:
    """The audio energy `peer` receives over the next `seconds`."""
    mark = peer.received.audio_energy
    await asyncio.sleep(seconds)  # a measurement window, not a synchronisation
    return peer.received.audio_energy - mark


@asynccontextmanager
async def peers(*made: ClientPeer) -> AsyncIterator[None]:
    try:
        yield
    finally:
        for p in made:
            await p.close()


def mute(peer: ClientPeer, muted: bool = True) -> None:
    assert isinstance(peer.audio, ToneTrack)
    peer.audio.muted = muted


async def falls_silent(peer: ClientPeer, quiet: float = 5.0) -> None:
    """`peer` stops receiving audio energy (within a few seconds: the buffers on the way drain) and stays silent
    over a further second."""
    for _ in range(20):
        if await energy_gain(peer, 0.3) < quiet:
            break
    assert await energy_gain(peer, 1.0) < quiet


def track_seconds(stream: av.stream.Stream) -> float:
    """A recording's track length: Matroska/WebM keeps it in the track's DURATION tag (HH:MM:SS.fraction)."""
    h, m, sec = stream.metadata["DURATION"].split(":")
    return int(h) * 3600 + int(m) * 60 + float(sec)
