"""MQTT channel: published to the recipient's topic (QoS 1). The broker's PUBACK says only that the broker has it:
success is *sent*; the core marks it delivered when the agency acknowledges on firelink/dispatch/{agency}/ack."""

from __future__ import annotations

from config import outbound
from ingest.mqtt_link import PublishError
from notify.channels.base import DeliveryContext, DeliveryError, Outgoing


class Mqtt:
    name = outbound.MQTT
    confirms = False

    def describe(self, target: str) -> str:
        return target

    async def deliver(self, message: Outgoing, ctx: DeliveryContext) -> None:
        if ctx.mqtt is None:
            raise DeliveryError("MQTT is not configured")
        try:
            await ctx.mqtt.publish(message.target, message.payload)
        except PublishError as exc:
            raise DeliveryError(str(exc) or "not published") from exc
