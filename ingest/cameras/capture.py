"""One decoding thread per camera, and the camera's health.

Every blocking OpenCV/network call (open, read, release, snapshot polling)
runs in the camera's own thread, never on the event loop. The thread hands
each decoded frame to a `sink` (thread-safe; see hub.CameraStream.push),
keeps health measurements (last frame time, identical-frame run, darkness),
and reconnects with exponential backoff after any failure.

`CameraCapture.health()` turns those measurements into a status; the hub
calls it from the event loop a few times a second, so "offline" is raised
even while the thread is stuck inside a blocking read.

Credentials: the secret URL exists only inside `_open_*`; logs, errors and
status use `redact_url()`/`display_url()`.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

# Process-wide FFmpeg options for OpenCV captures, read at each open: RTSP over TCP (robust through
# NAT/firewalls and what our test camera serves), a short probe so opening takes ~1 s rather than 5,
# FFmpeg/OpenCV chatter is silenced: it can name hosts and we report
# faults through status instead.
os.environ.setdefault("OPENCV_FFMPEG_CAPTURE_OPTIONS", "rtsp_transport;tcp|analyzeduration;1000000|probesize;1000000")
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")

import cv2
import numpy as np

from config.cameras import CameraConfig, redact_url

log = logging.getLogger(__name__)

Frame = np.ndarray[Any, Any]
FrameSink = Callable[[float, Frame], None]

THUMB_SIZE = (160, 90)
IDENTICAL_MEAN_DIFF = 0.2  # mean |Δ| of the 160×90 grey thumbnail below this = identical frame


class Status(enum.StrEnum):
    STARTING = "starting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"
    FROZEN = "frozen"
    DARK = "dark"
    DISABLED = "disabled"
    STANDBY = "standby"  # cluster mode: another node watches it (or none yet); not a fault


FAULTS = frozenset({Status.OFFLINE, Status.FROZEN, Status.DARK})


@dataclass(frozen=True, slots=True)
class Health:
    status: Status
    fault: str | None  # human text for the console; never contains credentials

    @property
    def is_fault(self) -> bool:
        return self.status in FAULTS


class SourceError(Exception):
    """A camera could not be opened or read. The message is safe to show (no credentials)."""


def diagnose(cfg: CameraConfig, timeout: float = 2.0) -> str:
    """Best-effort reason why a source failed to open (blocking; call from the capture thread)."""
    url = cfg.url
    if not cfg.is_network:
        if url.isdigit():
            return f"USB camera {url} not available"
        return "file not found" if not Path(url).exists() else "file cannot be decoded"
    parts = urlsplit(cfg.source_url())
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    port = parts.port or {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}.get(scheme, 80)
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except socket.gaierror:
        return "unknown host name"
    except ConnectionRefusedError:
        return "connection refused (camera off, or wrong port)"
    except TimeoutError:
        return "no answer from the camera (network, firewall or wrong address)"
    except OSError as exc:
        return f"network error ({exc.strerror or type(exc).__name__})"
    has_creds = bool(parts.username)
    try:
        if scheme == "rtsp":
            target = parts._replace(netloc=f"{host}:{port}").geturl()
            req = f"DESCRIBE {target} RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n"
            if has_creds:
                raw = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode()
                req += "Authorization: Basic " + base64.b64encode(raw).decode() + "\r\n"
            sock.settimeout(timeout)
            sock.sendall((req + "\r\n").encode())
            head = sock.recv(4096).decode("latin-1", "replace").split("\r\n", 1)[0]
            code = int(head.split()[1]) if head.startswith("RTSP/") and len(head.split()) > 1 else 0
        else:
            code = 0
    except (OSError, ValueError):
        code = 0
    finally:
        sock.close()
    if scheme in ("http", "https"):
        try:
            _http_get(cfg, timeout)
            code = 200
        except urllib.error.HTTPError as exc:
            code = exc.code
        except (OSError, ValueError):
            code = 0
    if code == 401:
        return "login failed (wrong username or password?)" if has_creds else "camera requires a login"
    if code == 403:
        return "access denied by the camera"
    if code == 404:
        return "stream path not found on the camera"
    if code == 200:
        return "camera answered but the stream could not be decoded"
    return "camera reachable but the stream could not be opened"


def _http_get(cfg: CameraConfig, timeout: float) -> bytes:
    """GET an HTTP(S) URL with Basic/Digest credentials (blocking). Errors never contain the password."""
    parts = urlsplit(cfg.source_url())
    clean = parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")).geturl()
    handlers: list[urllib.request.BaseHandler] = []
    if parts.username:
        mgr = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        mgr.add_password(None, clean, unquote(parts.username), unquote(parts.password or ""))
        handlers += [urllib.request.HTTPBasicAuthHandler(mgr), urllib.request.HTTPDigestAuthHandler(mgr)]
    opener = urllib.request.build_opener(*handlers)
    with opener.open(clean, timeout=timeout) as resp:
        data: bytes = resp.read()
        return data


FPS_WINDOW_S = 3.0  # the reported frame rate is measured over this window
SKIP_BEHIND_S = 0.3  # more than this behind the camera: skip BGR conversion/delivery to catch up
MAX_SKIP_IN_A_ROW = 4  # …but still deliver every 5th frame


class _LagMeter:
    """How far decoding runs behind the camera: (wall time − stream time) above its live-edge value.

    When a read had to wait for data we were at the live edge: that frame's offset becomes the
    baseline (this also absorbs stream clocks that drift from ours). When reads never wait, data is
    queueing up (decoding too slow) and the offset grows above the baseline: that is the backlog.
    Stream time jumps (RTSP timestamps restarting) rebase the meter.
    """

    def __init__(self) -> None:
        self.base: float | None = None
        self.prev_pts: float | None = None

    def update(self, now: float, pts_ms: float, waited: bool) -> float:
        if pts_ms <= 0 and self.prev_pts is None:
            return 0.0
        if self.prev_pts is not None and not 0 <= pts_ms - self.prev_pts <= 5000:
            self.base = None  # discontinuity
        self.prev_pts = pts_ms
        offset = now - pts_ms / 1000
        if self.base is None or waited or offset < self.base:
            self.base = offset
        return offset - self.base


class ReconnectBackoff:
    """Waits between connection attempts: doubling from `initial_s` up to `max_s` while attempts fail, and back to
    `initial_s` once a connection delivered video — so a short blip after a long outage costs the short wait, not
    the ceiling the outage had reached."""

    def __init__(self, initial_s: float, max_s: float) -> None:
        self.initial_s = initial_s
        self.max_s = max_s
        self._next = initial_s

    def after_failure(self, had_video: bool) -> float:
        """The wait before the next attempt. `had_video`: the attempt that just ended delivered frames."""
        if had_video:
            self._next = self.initial_s
        delay = self._next
        self._next = min(self._next * 2, self.max_s)
        return delay


class CameraCapture:
    """Runs one camera's decoding thread. Thread-side attributes are read by the loop (GIL-atomic)."""

    def __init__(self, cfg: CameraConfig, sink: FrameSink) -> None:
        self.cfg = cfg
        self._sink = sink
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.started_mono = time.monotonic()
        # measurements (written by the thread)
        self.connected = False
        self.last_error: str | None = None
        self.attempts = 0  # consecutive failed connection attempts
        self.reconnects = 0  # successful connections after the first
        self.sessions = 0
        self.next_retry_mono: float | None = None
        self.last_frame_mono: float | None = None
        self.last_frame_wall: float | None = None
        self.frames = 0
        self.width: int | None = None
        self.height: int | None = None
        self.source_fps: float | None = None
        self.fps = 0.0  # measured, exponential moving average
        self.identical_since: float | None = None
        self.behind_s = 0.0  # how far decoding lags the camera (network sources)
        self.skipped = 0  # frames decoded but skipped to catch up
        self.dark_since: float | None = None
        self.dark_reason: str | None = None
        self._thumb: Frame | None = None
        self._recent: deque[float] = deque()  # frame times of the last FPS_WINDOW_S
        self._last_kept = 0.0

    # ---- lifecycle (called from the loop; never blocks long) ----
    def start(self) -> None:
        if self._thread is not None or not self.cfg.enabled:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.cfg.id}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Blocking; call via asyncio.to_thread. True when the thread ended."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ---- health, evaluated on the loop ----
    def health(self, now: float | None = None) -> Health:
        cfg = self.cfg
        if not cfg.enabled:
            return Health(Status.DISABLED, None)
        now = time.monotonic() if now is None else now
        last = self.last_frame_mono
        silent_for = now - (last if last is not None else self.started_mono)
        if silent_for >= cfg.offline_after_s:
            why = self.last_error or ("no frames" if self.connected else "not connected")
            return Health(Status.OFFLINE, f"no video for {silent_for:.0f} s: {why}")
        if last is None or not self.connected:
            if self.attempts or self.reconnects:
                return Health(Status.RECONNECTING, self.last_error)
            return Health(Status.STARTING, None)
        if self.identical_since is not None and now - self.identical_since >= cfg.frozen_after_s:
            return Health(Status.FROZEN, f"picture unchanged for {now - self.identical_since:.0f} s")
        if self.dark_since is not None and now - self.dark_since >= cfg.dark_after_s:
            return Health(Status.DARK, self.dark_reason or "picture too dark or covered")
        return Health(Status.ONLINE, None)

    # ---- the thread ----
    def _run(self) -> None:
        cfg = self.cfg
        backoff = ReconnectBackoff(cfg.reconnect_initial_s, cfg.reconnect_max_s)
        while not self._stop.is_set():
            sessions = self.sessions  # _on_connected counts a session at its first frame, however it ends
            try:
                if cfg.effective_mode == "snapshot":
                    self._poll_snapshots()
                else:
                    self._read_stream()
            except SourceError as exc:
                self.last_error = str(exc)
            except Exception as exc:  # never let a camera kill its thread; never log the URL
                self.last_error = f"internal error ({type(exc).__name__})"
                log.exception("camera %s: unexpected error (source %s)", cfg.id, cfg.display_url())
            self.connected = False
            if self._stop.is_set():
                break
            delay = backoff.after_failure(had_video=self.sessions > sessions)
            self.attempts += 1
            self.next_retry_mono = time.monotonic() + delay
            log.warning(
                "camera %s (%s): %s; retrying in %.1f s",
                cfg.id, cfg.display_url(), self.last_error, delay,
            )  # fmt: skip
            self._stop.wait(delay)
        self.connected = False

    def _open_capture(self) -> cv2.VideoCapture:
        cfg = self.cfg
        if cfg.url.isdigit():
            cap = cv2.VideoCapture(int(cfg.url))
        else:
            params = [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout_s * 1000),
                # One decoding thread per camera: FFmpeg's frame threading would hold back
                # (threads - 1) frames, i.e. latency; cameras already decode in parallel.
                cv2.CAP_PROP_N_THREADS, 1,
            ]  # fmt: skip
            cap = cv2.VideoCapture(cfg.source_url(), cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            raise SourceError(diagnose(cfg))
        return cap

    def _read_stream(self) -> bool:
        cfg = self.cfg
        is_file = not cfg.is_network and not cfg.url.isdigit()
        cap = self._open_capture()
        got = False
        try:
            fps = cap.get(cv2.CAP_PROP_FPS)
            self.source_fps = fps if 0 < fps < 240 else None
            pace = 1.0 / (cfg.fps or self.source_fps or 10.0) if is_file else 0.0
            next_due = time.monotonic()
            log.info("camera %s (%s): connected", cfg.id, cfg.display_url())
            lag = _LagMeter() if cfg.is_network else None
            skipped = 0
            wait_evidence = max(0.03, 0.5 / (self.source_fps or 10.0))
            while not self._stop.is_set():
                t_grab = time.monotonic()
                ok = cap.grab()  # decodes; the BGR conversion happens in retrieve()
                now = time.monotonic()
                if not ok:
                    if is_file and cfg.loop and got:
                        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                        ok = cap.grab()
                    if not ok:
                        raise SourceError("stream ended" if is_file else "stream lost (no data)")
                if lag is not None and got:
                    behind = lag.update(now, cap.get(cv2.CAP_PROP_POS_MSEC), now - t_grab > wait_evidence)
                    self.behind_s = behind
                    if behind > cfg.max_lag_s:
                        raise SourceError(
                            f"decoding fell {behind:.1f} s behind the camera (overloaded?); resynchronising"
                        )
                    if behind > SKIP_BEHIND_S and skipped < MAX_SKIP_IN_A_ROW:
                        skipped += 1  # catching up: decode only, don't convert or deliver
                        self.skipped += 1
                        continue
                skipped = 0
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise SourceError("stream lost (undecodable frame)")
                if not got:
                    got = True
                    self._on_connected()
                self._accept(frame)
                if pace:
                    next_due += pace
                    delay = next_due - time.monotonic()
                    if delay > 0:
                        self._stop.wait(delay)
                    else:
                        next_due = time.monotonic()
        finally:
            cap.release()
        return got

    def _poll_snapshots(self) -> bool:
        cfg = self.cfg
        period = 1.0 / (cfg.fps or 1.0)
        got = False
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                data = _http_get(cfg, cfg.read_timeout_s)
            except urllib.error.HTTPError as exc:
                code = {401: "login failed (wrong username or password?)", 404: "snapshot URL not found"}
                raise SourceError(code.get(exc.code, f"camera answered HTTP {exc.code}")) from None
            except (OSError, ValueError):
                raise SourceError(diagnose(cfg)) from None
            frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if frame is None:
                raise SourceError("snapshot is not an image")
            if not got:
                got = True
                self._on_connected()
            self._accept(frame)
            self._stop.wait(max(0.0, period - (time.monotonic() - t0)))
        return got

    def _on_connected(self) -> None:
        if self.sessions:
            self.reconnects += 1
            log.info("camera %s: video back after reconnecting", self.cfg.id)
        self.sessions += 1
        self.connected = True
        self.attempts = 0
        self.last_error = None

    def _accept(self, frame: Frame) -> None:
        now = time.monotonic()
        if self.cfg.fps and self.frames and now - self._last_kept < 0.9 / self.cfg.fps:
            return  # over the configured rate: decoded (the codec needs it) but not kept
        wall = time.time()
        recent = self._recent
        recent.append(now)
        while recent[0] < now - FPS_WINDOW_S:
            recent.popleft()
        span = now - recent[0]
        self.fps = (len(recent) - 1) / span if span > 0.5 else self.fps
        self._last_kept = now
        self.height, self.width = frame.shape[:2]
        self._analyse(frame, now)
        self.frames += 1
        self.last_frame_mono = now
        self.last_frame_wall = wall
        frame.flags.writeable = False  # shared by every consumer
        self._sink(wall, frame)

    def _analyse(self, frame: Frame, now: float) -> None:
        small = cv2.resize(frame, THUMB_SIZE, interpolation=cv2.INTER_AREA)
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small
        prev, self._thumb = self._thumb, grey
        if prev is not None and float(cv2.absdiff(prev, grey).mean()) < IDENTICAL_MEAN_DIFF:
            if self.identical_since is None:
                self.identical_since = now
        else:
            self.identical_since = None
        mean, std = (float(v[0][0]) for v in cv2.meanStdDev(grey))
        reason = None
        if mean < self.cfg.dark_luma:
            reason = f"picture too dark (brightness {mean:.0f}/255)"
        elif std < self.cfg.covered_contrast:
            reason = "picture featureless (lens covered, sprayed or out of focus?)"
        if reason is None:
            self.dark_since = None
        elif self.dark_since is None:
            self.dark_since = now
        self.dark_reason = reason

    def info(self) -> dict[str, Any]:
        h = self.health()
        return {
            "status": h.status.value,
            "fault": h.fault,
            "resolution": [self.width, self.height] if self.width else None,
            "fps": round(self.fps, 1) if h.status in (Status.ONLINE, Status.FROZEN, Status.DARK) else 0.0,
            "frames": self.frames,
            "reconnects": self.reconnects,
            "behind_s": round(self.behind_s, 2),
            "last_frame_at": self.last_frame_wall,
        }


def redact(text: str, cfg: CameraConfig) -> str:
    """Remove any trace of this camera's secrets from a message (defence in depth)."""
    out = text.replace(cfg.source_url(), redact_url(cfg.source_url()))
    if cfg.password is not None and (pw := cfg.password.get_secret_value()):
        out = out.replace(pw, "***")
    with contextlib.suppress(ValueError):
        parts = urlsplit(cfg.url)
        if parts.password:
            out = out.replace(parts.password, "***").replace(unquote(parts.password), "***")
    return out
