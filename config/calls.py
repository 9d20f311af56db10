"""Live calls between the command room and a unit's phone (docs/calls.md): ICE servers, timers, recording."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

RETENTION_MIN_DAYS = 183  # GB fire remote-monitoring centres: call recordings kept at least 6 months


class IceServerConfig(BaseModel):
    """A STUN or TURN server (e.g. coturn). Browsers and the server's own ICE agent both use it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[str] = Field(
        ..., min_length=1, title="URLs",
        description="stun:host:port, turn:host:port?transport=udp|tcp or turns:host:port?transport=tcp.")
    username: str | None = Field(None, max_length=200, title="Username",
                                 description="A fixed TURN username (with `credential`).")
    credential: SecretStr | None = Field(
        None, title="Credential",
        description="A fixed TURN password. It is given to every browser that joins a call (that is how TURN works): "
                    "prefer `shared_secret`.")
    shared_secret: SecretStr | None = Field(
        None, title="Shared secret",
        description="coturn's static-auth-secret (use-auth-secret): each participant gets a username and password "
                    "valid for `credential_ttl_s` only (the TURN REST API scheme); the secret never leaves the server.")
    credential_ttl_s: int = Field(3600, ge=60, le=86_400, title="Credential lifetime",
                                  description="Seconds a credential made from `shared_secret` stays valid.")

    @field_validator("urls")
    @classmethod
    def _schemes(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not url.startswith(("stun:", "turn:", "turns:")):
                raise ValueError(f"{url!r}: an ICE server URL starts with stun:, turn: or turns:")
        return urls

    @model_validator(mode="after")
    def _one_kind_of_credential(self) -> IceServerConfig:
        if self.shared_secret is not None and (self.username is not None or self.credential is not None):
            raise ValueError("give either shared_secret or username/credential, not both")
        if (self.username is None) != (self.credential is None):
            raise ValueError("username and credential go together")
        return self

    def for_client(self, who: str, now: float) -> dict[str, Any]:
        """The RTCIceServer dict a browser is given (credentials made for `who` when a shared secret is set)."""
        out: dict[str, Any] = {"urls": list(self.urls)}
        if self.shared_secret is not None:
            username = f"{int(now) + self.credential_ttl_s}:{who}"
            mac = hmac.new(self.shared_secret.get_secret_value().encode(), username.encode(), hashlib.sha1)
            out.update(username=username, credential=base64.b64encode(mac.digest()).decode())
        elif self.username is not None and self.credential is not None:
            out.update(username=self.username, credential=self.credential.get_secret_value())
        return out


class CallsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, title="Calls", description="Voice and phone video between command room and units.")
    ice_servers: list[IceServerConfig] = Field(
        default_factory=list, title="ICE servers",
        description="STUN/TURN servers for phones on mobile networks (empty: direct connections only, e.g. a LAN "
                    "or loopback).")
    ring_timeout_s: float = Field(45.0, ge=1, le=600, title="Ring timeout",
                                  description="An unanswered call ends as no answer after this.")
    connect_timeout_s: float = Field(
        12.0, ge=1, le=120, title="Connect timeout",
        description="A participant whose media has not connected this long after it joined has no media path.")
    reconnect_grace_s: float = Field(
        30.0, ge=1, le=600, title="Reconnect grace",
        description="A dropped phone (or the last officer) may come back into the same call within this.")
    stall_s: float = Field(
        4.0, ge=1, le=60, title="Media stall",
        description="No audio from a connected participant for this long: shown as reconnecting.")
    record: bool = Field(True, title="Record", description="Record every call (audio and video) as evidence.")
    retention_days: float = Field(
        RETENTION_MIN_DAYS, ge=RETENTION_MIN_DAYS, title="Recording retention",
        description="An incident's evidence folder holding a call recording is kept at least this long after the "
                    "call (and at least video.retention_days); at least 183 days (6 months).")
    media_processes: int = Field(
        2, ge=0, le=64, title="Media processes",
        description="Worker processes that carry the calls' media (WebRTC, mixing, recording), so the core's event "
                    "loop never does; calls are spread over them. 0: in the core's own process.")
    max_calls: int = Field(16, ge=1, le=500, title="Live calls",
                           description="Calls at once; more are refused (503) rather than degrading every call.")
