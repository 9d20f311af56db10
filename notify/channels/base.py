"""What an outbound channel is: a named way to deliver one outbox message, and what its success means.

A channel delivers a message (`deliver` returns when the far side took it, raises `DeliveryError` — or a
network error — when it did not; the worker retries with backoff). `confirms` says what success means:
True — the recipient's side confirmed (a webhook's 2xx): the dispatch's channel becomes *delivered*;
False — a transport took it but cannot say the recipient has it (the MQTT broker's PUBACK): only *sent*.

Channels are looked up by name in a `ChannelRegistry` (notify.channels.CHANNELS); the name is what the outbox row's
`channel` column and a configured plug-in channel's `type` hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from config import outbound
from config.schema import FirelinkConfig

if TYPE_CHECKING:
    import aiohttp

    from ingest.mqtt_link import MqttLink


class DeliveryError(Exception):
    """One attempt failed for a reason worth recording (the message says why); it is retried."""


class ChannelConfigError(Exception):
    """The configuration names a channel that no registered channel provides."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One outbox message as a channel sees it."""

    id: int
    channel: str
    key: str
    target: str
    ref: str
    payload: dict[str, Any]
    idempotency_key: str
    settings: object | None  # the configured entry (config.outbound.Outbound.settings); None if gone or none


@dataclass(frozen=True, slots=True)
class DeliveryContext:
    """What channels may use to deliver: the configuration, one HTTP client session, the MQTT link (if any)."""

    cfg: FirelinkConfig
    http: aiohttp.ClientSession
    mqtt: MqttLink | None


class Channel(Protocol):
    @property
    def name(self) -> str:
        """The outbox rows' `channel` value (and a plug-in's config `type`)."""

    @property
    def confirms(self) -> bool:
        """True: success means the recipient confirmed (delivered); False: only that a transport took it (sent)."""

    def describe(self, target: str) -> str:
        """The target as logs and records may show it (no credentials)."""

    async def deliver(self, message: Outgoing, ctx: DeliveryContext) -> None:
        """Delivers once; raises DeliveryError (or a network error) when it did not get through."""


class ChannelRegistry:
    """Channels by name."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._by_name: dict[str, Channel] = {}
        for channel in channels:
            self.register(channel)

    def register(self, channel: Channel) -> None:
        if channel.name in self._by_name:
            raise ValueError(f"an outbound channel named {channel.name!r} is already registered")
        self._by_name[channel.name] = channel

    def unregister(self, name: str) -> None:
        self._by_name.pop(name, None)

    def get(self, name: str) -> Channel | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def check(self, cfg: FirelinkConfig) -> None:
        """Raises ChannelConfigError naming every configured channel that no registered channel delivers."""
        missing = [f"{o.ref}: {o.channel}" for o in outbound.every(cfg) if o.channel not in self._by_name]
        if missing:
            raise ChannelConfigError(f"no outbound channel registered for {'; '.join(missing)} "
                                     f"(registered: {', '.join(self.names())})")
