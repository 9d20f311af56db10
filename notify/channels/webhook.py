"""Webhook channel: the dispatch JSON POSTed to the recipient's URL, HMAC-signed; a 2xx is the recipient confirming."""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from config import outbound
from config.schema import WebhookChannel
from notify.channels.base import DeliveryContext, DeliveryError, Outgoing
from notify.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, encode_body, sign


def safe_target(url: str) -> str:
    """URL without credentials or query string, for logs and records."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Webhook:
    name = outbound.WEBHOOK
    confirms = True

    def describe(self, target: str) -> str:
        return safe_target(target)

    async def deliver(self, message: Outgoing, ctx: DeliveryContext) -> None:
        hook = message.settings
        if not isinstance(hook, WebhookChannel):
            raise DeliveryError(f"webhook {message.ref} is no longer configured")
        body = encode_body(message.payload)
        headers = {"Content-Type": "application/json; charset=utf-8",
                   SIGNATURE_HEADER: sign(hook.secret.get_secret_value(), body),
                   IDEMPOTENCY_HEADER: message.idempotency_key}
        timeout = aiohttp.ClientTimeout(total=hook.timeout_s)
        async with ctx.http.post(message.target, data=body, headers=headers, timeout=timeout) as resp:
            if not 200 <= resp.status < 300:
                raise DeliveryError(f"HTTP {resp.status} from {safe_target(message.target)}")
