"""A small, real RTSP camera for tests, the benchmark and demos.

Debian's ffmpeg 5.1 cannot act as an RTSP *server* (``-rtsp_flags listen``
only exists for the demuxer, i.e. for receiving an ANNOUNCE/RECORD push),
and mediamtx is not packaged in Debian. So this module plays the camera:

* ffmpeg encodes the clip to H.264 (looping, real time) and sends RTP to two
  loopback UDP ports of this process (``-f rtp``; it also writes the SDP);
* this process speaks RTSP/1.0 on TCP (OPTIONS, DESCRIBE, SETUP, PLAY,
  GET_PARAMETER, TEARDOWN) with optional Basic authentication, and relays
  the RTP/RTCP packets to every playing client, interleaved on the RTSP
  connection (RTP/AVP/TCP). UDP transport requests get 461, so clients fall
  back to TCP as they do with many real cameras.

Clients see a standards-conforming RTSP camera: OpenCV/ffmpeg's RTSP client,
VLC and ffplay play it. Kill the process → the camera is gone (ffmpeg dies
with it through PR_SET_PDEATHSIG and the process group).

    python -m ingest.cameras.testsrc --port 8554 --path cam1 -- \
        -re -stream_loop -1 -i var/clips/vtest.avi
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

MAX_CLIENT_BUFFER = 2 * 1024 * 1024  # bytes queued for one client before its packets are dropped


def _pdeathsig() -> None:  # pragma: no cover - runs in the child before exec
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _free_udp_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    return s


class _Relay(asyncio.DatagramProtocol):
    def __init__(self, server: RtspTestServer, channel: int) -> None:
        self.server = server
        self.channel = channel

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self.server.fan_out(self.channel, data)


class RtspTestServer:
    def __init__(
        self,
        ffmpeg_input: list[str],
        *,
        host: str = "127.0.0.1",
        port: int = 8554,
        path: str = "cam1",
        username: str | None = None,
        password: str | None = None,
        encode_args: list[str] | None = None,
    ) -> None:
        self.ffmpeg_input = ffmpeg_input
        self.host = host
        self.port = port
        self.path = path.strip("/")
        self.auth = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode() if username else None
        self.encode_args = encode_args or [
            "-an", "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
            "-g", "10", "-pix_fmt", "yuv420p", "-flags", "+global_header",
            "-x264-params", "repeat-headers=1",
        ]  # fmt: skip
        self.players: set[asyncio.StreamWriter] = set()
        self.sdp = ""
        self.ffmpeg: subprocess.Popen[bytes] | None = None

    def fan_out(self, channel: int, packet: bytes) -> None:
        frame = b"$" + bytes([channel]) + len(packet).to_bytes(2, "big") + packet
        for w in list(self.players):
            if w.is_closing():
                self.players.discard(w)
            elif w.transport.get_write_buffer_size() < MAX_CLIENT_BUFFER:
                w.write(frame)

    async def start_encoder(self) -> None:
        loop = asyncio.get_running_loop()
        rtp, rtcp = _free_udp_socket(), _free_udp_socket()
        await loop.create_datagram_endpoint(lambda: _Relay(self, 0), sock=rtp)
        await loop.create_datagram_endpoint(lambda: _Relay(self, 1), sock=rtcp)
        tmp = Path(tempfile.mkdtemp(prefix="rtsp-testsrc-"))
        sdp_file = tmp / "stream.sdp"
        cmd = [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin" if "-" not in self.ffmpeg_input else "-y",
            *self.ffmpeg_input, *self.encode_args,
            "-f", "rtp", "-sdp_file", str(sdp_file),
            f"rtp://127.0.0.1:{rtp.getsockname()[1]}?rtcpport={rtcp.getsockname()[1]}&pkt_size=1200",
        ]  # fmt: skip
        self.ffmpeg = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; we poll it below
            cmd, stdout=subprocess.DEVNULL, preexec_fn=_pdeathsig
        )
        deadline = loop.time() + 30  # a cold first ffmpeg start on a busy 2-core box has taken > 10 s
        while loop.time() < deadline:
            if sdp_file.exists() and "m=video" in (text := sdp_file.read_text()):
                self.sdp = self._rewrite_sdp(text)
                shutil.rmtree(tmp, ignore_errors=True)
                return
            if self.ffmpeg.poll() is not None:
                raise RuntimeError(f"ffmpeg exited with {self.ffmpeg.returncode}")
            await asyncio.sleep(0.05)
        raise RuntimeError("ffmpeg wrote no SDP in 30 s")

    @staticmethod
    def _rewrite_sdp(text: str) -> str:
        out: list[str] = []
        for line in text.splitlines():
            line = line.strip()
            if not line or line.startswith("a=tool"):
                continue
            if line.startswith("c="):
                line = "c=IN IP4 0.0.0.0"
            if line.startswith("m=video"):
                parts = line.split()
                parts[1] = "0"
                out.append(" ".join(parts))
                out.append("a=control:streamid=0")
                continue
            out.append(line)
            if line.startswith("t="):
                out.append("a=control:*")
        return "\r\n".join(out) + "\r\n"

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = secrets.token_hex(8)
        base = f"rtsp://{self.host}:{self.port}/{self.path}"
        try:
            while True:
                first = await reader.readexactly(1)
                if first == b"$":  # interleaved RTCP from the client: read and ignore
                    hdr = await reader.readexactly(3)
                    await reader.readexactly(int.from_bytes(hdr[1:3], "big"))
                    continue
                head = first + await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, url, _ = [*lines[0].split(" "), "", ""][:3]
                headers = {}
                for h in lines[1:]:
                    if ":" in h:
                        k, v = h.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                if n := int(headers.get("content-length", "0")):
                    await reader.readexactly(n)
                cseq = headers.get("cseq", "0")

                def reply(status: str, extra: dict[str, str] | None = None, body: str = "") -> None:
                    out = [f"RTSP/1.0 {status}", f"CSeq: {cseq}", "Server: firelink-testsrc"]  # noqa: B023
                    out += [f"{k}: {v}" for k, v in (extra or {}).items()]
                    if body:
                        out.append(f"Content-Length: {len(body.encode())}")
                    writer.write(("\r\n".join(out) + "\r\n\r\n" + body).encode())

                if method == "OPTIONS":
                    reply("200 OK", {"Public": "OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN, GET_PARAMETER"})
                    continue
                if self.auth and headers.get("authorization") != self.auth:
                    reply("401 Unauthorized", {"WWW-Authenticate": 'Basic realm="firelink-testsrc"'})
                    continue
                path = url.split("://", 1)[-1].split("/", 1)[-1] if "://" in url else url
                if not path.strip("/").startswith(self.path):
                    reply("404 Not Found")
                    continue
                sess = {"Session": f"{session};timeout=60"}
                if method == "DESCRIBE":
                    reply("200 OK", {"Content-Type": "application/sdp", "Content-Base": base + "/"}, self.sdp)
                elif method == "SETUP":
                    if "interleaved" not in headers.get("transport", ""):
                        reply("461 Unsupported Transport")
                        continue
                    reply("200 OK", {"Transport": "RTP/AVP/TCP;unicast;interleaved=0-1", **sess})
                elif method == "PLAY":
                    reply("200 OK", {"Range": "npt=0.000-", **sess})
                    self.players.add(writer)
                elif method in ("GET_PARAMETER", "SET_PARAMETER"):
                    reply("200 OK", sess)
                elif method == "TEARDOWN":
                    reply("200 OK", sess)
                    break
                else:
                    reply("405 Method Not Allowed")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self.players.discard(writer)
            writer.close()

    async def serve(self, ready: asyncio.Event | None = None) -> None:
        await self.start_encoder()
        server = await asyncio.start_server(self.handle, self.host, self.port)
        if ready is not None:
            ready.set()
        print(f"READY rtsp://{self.host}:{self.port}/{self.path}", flush=True)
        try:
            async with server:
                assert self.ffmpeg is not None
                await asyncio.to_thread(self.ffmpeg.wait)
        finally:
            if self.ffmpeg is not None and self.ffmpeg.poll() is None:
                self.ffmpeg.kill()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8554)
    p.add_argument("--path", default="cam1")
    p.add_argument("--username")
    p.add_argument("--password", default=os.environ.get("TESTSRC_PASSWORD"))
    p.add_argument("--encode", help="ffmpeg output codec options (default: libx264 ultrafast zerolatency g=10)")
    p.add_argument("ffmpeg_input", nargs=argparse.REMAINDER, help="-- then ffmpeg input options")
    a = p.parse_args(argv)
    inp = [x for x in a.ffmpeg_input if x != "--"] or ["-re", "-stream_loop", "-1", "-i", "var/clips/vtest.avi"]
    srv = RtspTestServer(
        inp, host=a.host, port=a.port, path=a.path, username=a.username, password=a.password,
        encode_args=a.encode.split() if a.encode else None,
    )  # fmt: skip
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(srv.serve())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
