"""Camera configuration (owned by the camera layer, used by the main config).

`CameraConfig` is one entry of `cameras:` in firelink.yaml. `VideoConfig`
holds the settings of the whole video layer (evidence, encoding); the core
config may carry it as `video:`; until then `console.video.setup_video`
falls back to its defaults.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


def redact_url(url: str) -> str:
    """The URL with any user/password replaced by ``***`` (safe for logs, API and errors).

    Query parameters that look like credentials (password, passwd, pwd, pass, token, key, auth,
    user, username) are redacted too; cameras often take them there.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        secret_keys = {"password", "passwd", "pwd", "pass", "token", "key", "auth", "user", "username"}
        items = []
        for item in query.split("&"):
            k, sep, _v = item.partition("=")
            items.append(f"{k}=***" if sep and k.lower() in secret_keys else item)
        query = "&".join(items)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class CameraConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(
        ...,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$",
        title="Camera id",
        description="Stable id used in URLs and evidence file names.",
    )
    unit_id: str = Field(..., title="Unit", description="Key unit this camera watches.")
    name: str = Field(..., min_length=1, title="Name", description="Name shown to officers.")
    url: str = Field(
        ...,
        title="Source",
        description=(
            "rtsp://, http(s):// MJPEG stream or snapshot URL, a local video file path, or a USB index like 0. "
            "Credentials may be given in the URL or (better) as username/password; they are never shown."
        ),
    )
    location: str = Field("", title="Location", description="Where it looks, e.g. 南门安全出口.")
    username: str | None = Field(None, title="Username", description="Camera login (never shown or logged).")
    password: SecretStr | None = Field(None, title="Password", description="Camera password (never shown).")
    enabled: bool = Field(True, title="Enabled", description="Disabled cameras are listed but not opened.")
    mode: Literal["auto", "stream", "snapshot"] = Field(
        "auto",
        title="Mode",
        description=(
            "stream: decode a continuous stream; snapshot: poll a still-image HTTP URL at `fps`; "
            "auto: snapshot for http URLs ending in .jpg/.jpeg/.cgi?…snapshot, otherwise stream."
        ),
    )
    fps: float | None = Field(
        None,
        gt=0,
        le=60,
        title="Frame rate cap",
        description=(
            "Frames per second kept from the source (extra frames are decoded and dropped). Snapshot "
            "polling rate; for local files the playback rate (default: the file's own rate)."
        ),
    )
    loop: bool = Field(
        True, title="Loop files", description="Local files restart at the end (demo cameras), else go offline."
    )
    open_timeout_s: float = Field(
        5.0, gt=0, le=60, title="Open timeout", description="Give up connecting after this many seconds."
    )
    read_timeout_s: float = Field(
        3.0, gt=0, le=60, title="Read timeout", description="A read blocked this long counts as a lost stream."
    )
    max_lag_s: float = Field(
        2.0,
        gt=0,
        title="Resync after lag",
        description=(
            "If decoding falls this many seconds behind the camera (an overloaded machine), drop the "
            "backlog by reconnecting, so live video never runs ever later."
        ),
    )
    offline_after_s: float = Field(
        3.0, gt=0, title="Offline after", description="No frame for this many seconds → offline fault."
    )
    frozen_after_s: float = Field(
        10.0, gt=0, title="Frozen after", description="Identical frames for this many seconds → frozen fault."
    )
    dark_after_s: float = Field(
        10.0, gt=0, title="Dark after", description="Dark or featureless picture this long → dark fault."
    )
    dark_luma: float = Field(
        16.0, ge=0, le=255, title="Dark threshold", description="Mean luma (0–255) below this is too dark."
    )
    covered_contrast: float = Field(
        4.0,
        ge=0,
        le=128,
        title="Covered threshold",
        description="Luma standard deviation below this (a lens covered or sprayed) counts as covered.",
    )
    reconnect_initial_s: float = Field(
        0.5, gt=0, title="Reconnect initial backoff", description="First wait after a failed connection."
    )
    reconnect_max_s: float = Field(
        30.0, gt=0, title="Reconnect max backoff", description="Reconnect waits double up to this ceiling."
    )

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be ≥ reconnect_initial_s")
        if (
            self.url.startswith(("rtsp://", "http://", "https://", "rtsps://"))
            and "@" in urlsplit(self.url).netloc
            and (self.username or self.password)
        ):
            raise ValueError(f"camera {self.id}: give credentials either in the URL or as username/password")
        return self

    @property
    def is_network(self) -> bool:
        return self.url.split("://", 1)[0].lower() in ("rtsp", "rtsps", "http", "https")

    @property
    def effective_mode(self) -> Literal["stream", "snapshot"]:
        if self.mode != "auto":
            return self.mode
        u = self.url.lower()
        if u.startswith(("http://", "https://")):
            path = urlsplit(u).path
            if path.endswith((".jpg", ".jpeg")) or "snapshot" in u:
                return "snapshot"
        return "stream"

    def source_url(self) -> str:
        """The URL to open, with username/password inserted (secret: never log or return it)."""
        if not (self.is_network and self.username):
            return self.url
        parts = urlsplit(self.url)
        pw = self.password.get_secret_value() if self.password else ""
        cred = quote(self.username, safe="") + (":" + quote(pw, safe="") if pw else "")
        return urlunsplit((parts.scheme, f"{cred}@{parts.netloc}", parts.path, parts.query, parts.fragment))

    def display_url(self) -> str:
        """The URL without credentials (what logs and admin pages may show)."""
        return redact_url(self.url)


class VideoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    evidence_dir: str = Field(
        "var/evidence", title="Evidence folder", description="Where incident snapshots and clips are stored."
    )
    pre_s: float = Field(
        10.0, ge=0, le=120, title="Clip pre-roll", description="Seconds of video kept before the alarm."
    )
    post_s: float = Field(
        20.0, ge=0, le=600, title="Clip post-roll", description="Seconds of video recorded after the alarm."
    )
    retention_days: float = Field(
        90, gt=0, title="Retention", description="Evidence older than this is deleted unless on hold (a case)."
    )
    evidence_max_width: int = Field(
        1280, ge=160, le=3840, title="Evidence width", description="Evidence frames wider than this are scaled."
    )
    jpeg_quality: int = Field(
        80, ge=30, le=95, title="JPEG quality", description="Quality of live-view and evidence JPEG frames."
    )
    live_widths: list[int] = Field(
        default_factory=lambda: [320, 480, 640, 960, 1280, 1920],
        title="Live sizes",
        description="Widths a viewer may ask for (?w=); a request snaps up to the next one (bounds encoders).",
    )
    clip_crf: int = Field(
        26, ge=15, le=40, title="Clip quality", description="x264 CRF of evidence clips (lower = better/bigger)."
    )
