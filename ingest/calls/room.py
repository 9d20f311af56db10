"""One call's media on the server: a peer connection per participant, the mixer, the phone's video, the recording.

The server is the hub: every participant's browser has one RTCPeerConnection to it (aiortc), negotiated by one
offer/answer (aiortc gathers its candidates before answering, so there is no trickle ICE). The phone sends audio
and video and hears the mix of the others; officers and the brigade send audio and receive the mix of the others
and the phone's video, forwarded as the phone encoded it (ingest.calls.video: VP8 only, never decoded or
re-encoded on the server). Joining again under the same key (a phone that dropped and
came back) replaces that participant's connection; the others keep theirs, nothing is renegotiated.

`on_state(key, state)` reports each participant's connection state (aiortc's: connecting, connected, failed,
closed) so the call's logic (dispatch.calls) can tell connected, dropped and failed apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack

from ingest.calls import aiortc_speedups
from ingest.calls.mixer import AudioMixer, MixOutput
from ingest.calls.recorder import CallRecorder, Recording
from ingest.calls.video import CallVideo, VideoFeed, snapshot_jpeg

log = logging.getLogger(__name__)

StateFn = Callable[[str, str], None]  # (participant key, connection state)
aiortc_speedups.install()  # audio level vectorised, video passed through undecoded (see the module)
MAX_SDP = 32_000
VP8_ONLY = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")]


class BadOffer(ValueError):
    """The browser's session description cannot be used (not an offer aiortc can answer)."""


@dataclass
class Peer:
    key: str
    pc: RTCPeerConnection
    sends_video: bool
    hears: MixOutput | None = None
    sees: VideoFeed | None = None
    tracks: set[str] = field(default_factory=set)  # kinds received from this participant


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN/TURN server for the server's own ICE agent (aiortc uses the first STUN and first TURN)."""

    urls: list[str]
    username: str | None = None
    credential: str | None = None


class MediaRoom:
    def __init__(self, ice_servers: list[IceServer] | None = None, on_state: StateFn | None = None) -> None:
        self.ice = [RTCIceServer(urls=s.urls, username=s.username, credential=s.credential)
                    for s in ice_servers or []]
        self.on_state = on_state or (lambda _key, _state: None)
        self.mixer = AudioMixer()
        self.video = CallVideo()
        self.peers: dict[str, Peer] = {}
        self.recorder: CallRecorder | None = None
        self._record_audio: MixOutput | None = None
        self._record_video: VideoFeed | None = None
        self._closed = False
        self.mixer.start()

    async def join(self, key: str, offer_sdp: str, *, sends_video: bool) -> str:
        """Answers participant `key`'s offer (replacing its previous connection); returns the answer's SDP."""
        if self._closed:
            raise BadOffer("the call has ended")
        if not offer_sdp.startswith("v=0") or len(offer_sdp) > MAX_SDP:
            raise BadOffer("not a session description (SDP starting with v=0)")
        await self.leave(key)
        pc = RTCPeerConnection(RTCConfiguration(iceServers=self.ice))
        if any(line.startswith("m=video") for line in offer_sdp.splitlines()):  # its video m-line: VP8 only
            pc.addTransceiver("video", direction="recvonly").setCodecPreferences(VP8_ONLY)
        peer = Peer(key, pc, sends_video)
        self.peers[key] = peer

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if self.peers.get(key) is not peer:
                return
            peer.tracks.add(track.kind)
            if track.kind == "audio":
                self.mixer.add_input(key, track)
            elif track.kind == "video" and sends_video:
                aiortc_speedups.pass_through(track)
                receiver = next(r for r in pc.getReceivers() if r.track is track)
                self.video.set_source(track, lambda: _ask_keyframe(receiver))

        @pc.on("connectionstatechange")
        def on_change() -> None:
            if self.peers.get(key) is peer:
                self.on_state(key, pc.connectionState)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            for tr in pc.getTransceivers():
                if tr.kind == "audio" and peer.hears is None:
                    peer.hears = self.mixer.output(exclude=key)
                    tr.sender.replaceTrack(peer.hears)
                    tr.direction = "sendrecv" if tr.direction in ("recvonly", "sendrecv") else "sendonly"
                elif tr.kind == "video" and not sends_video and peer.sees is None:
                    peer.sees = self.video.subscribe()
                    tr.sender.replaceTrack(peer.sees)
                    tr.direction = "sendonly"
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
        except Exception as exc:  # aiortc raises ValueError, InvalidStateError, InternalError, ... on bad SDP
            await self.leave(key)
            raise BadOffer(f"cannot answer this offer: {exc}"[:300]) from exc
        return str(pc.localDescription.sdp)

    async def leave(self, key: str) -> None:
        """Closes participant `key`'s connection (if any)."""
        peer = self.peers.pop(key, None)
        if peer is None:
            return
        self.mixer.remove_input(key)
        if peer.hears is not None:
            self.mixer.drop_output(peer.hears)
        if peer.sees is not None:
            peer.sees.stop()
        if peer.sends_video and "video" in peer.tracks:
            self.video.set_source(None)
        with contextlib.suppress(Exception):
            await peer.pc.close()

    def state(self, key: str) -> str | None:
        """Participant `key`'s connection state (aiortc's), None when it has no connection."""
        peer = self.peers.get(key)
        return None if peer is None else str(peer.pc.connectionState)

    def sends_audio(self, key: str) -> bool:
        peer = self.peers.get(key)
        return peer is not None and "audio" in peer.tracks

    def heard(self, key: str) -> tuple[float, int] | None:
        """(seconds since participant `key`'s last audio frame, audio frames received from it)."""
        return self.mixer.heard(key)

    async def snapshot_jpeg(self) -> bytes | None:
        """The phone's latest picture as JPEG, None before its first frame."""
        return await asyncio.to_thread(snapshot_jpeg, list(self.video.gop))

    def start_recording(self, path: Path) -> None:
        if self.recorder is not None:
            return
        self.recorder = CallRecorder(path)
        self._record_audio = self.mixer.output(exclude=None)
        self._record_video = self.video.subscribe()
        self.recorder.start(self._record_audio, self._record_video)

    async def stop_recording(self) -> Recording | None:
        rec, self.recorder = self.recorder, None
        if rec is None:
            return None
        try:
            return await rec.stop()
        finally:
            if self._record_audio is not None:
                self.mixer.drop_output(self._record_audio)
                self._record_audio = None
            if self._record_video is not None:
                self._record_video.stop()
                self._record_video = None

    async def close(self) -> Recording | None:
        """Ends the call's media: stops the recording (returned), closes every connection."""
        self._closed = True
        try:
            return await self.stop_recording()
        finally:
            await asyncio.gather(*(self.leave(k) for k in list(self.peers)), return_exceptions=True)
            await self.video.stop()
            await self.mixer.stop()


def _ask_keyframe(receiver: RTCRtpReceiver) -> None:
    """Sends a PLI (RFC 4585) for each stream `receiver` got in the last 10 s."""
    for source in receiver.getSynchronizationSources():
        task = asyncio.ensure_future(receiver._send_rtcp_pli(source.source))
        _sending.add(task)
        task.add_done_callback(_sending.discard)


_sending: set[asyncio.Future[None]] = set()  # PLIs on their way (a task nobody holds may be collected)
