"""Outbound channels by name. A new channel (an SMS or voice-call gateway, ...) is one module with a class that
fits `Channel` (notify.channels.base) plus one line in BUILT_IN below; agencies then name it in their config
(`channels: [{type: sms, target: ...}]`). Tests and plug-ins may also `CHANNELS.register(...)` before the app starts.
"""

from __future__ import annotations

from notify.channels.base import (
    Channel,
    ChannelConfigError,
    ChannelRegistry,
    DeliveryContext,
    DeliveryError,
    Outgoing,
)
from notify.channels.mqtt import Mqtt
from notify.channels.webhook import Webhook

BUILT_IN: tuple[Channel, ...] = (Webhook(), Mqtt())

CHANNELS = ChannelRegistry(BUILT_IN)
"""The registry the notify worker delivers through."""

__all__ = ["BUILT_IN", "CHANNELS", "Channel", "ChannelConfigError", "ChannelRegistry", "DeliveryContext",
           "DeliveryError", "Outgoing"]
