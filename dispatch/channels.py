"""Per-channel delivery state of a dispatch: what each agency channel's far side has confirmed.

A dispatch goes out on every channel of its agency (config.outbound: each webhook, each plug-in channel, and MQTT).
Each channel has its own state, under the key its outbox row was created with:

* ``pending``   — not accepted anywhere yet (attempts and the last error tell why);
* ``sent``      — handed to a transport that accepted it but cannot confirm the agency got it: the MQTT broker's
                  PUBACK only says the broker has it (nobody may be subscribed);
* ``delivered`` — the agency's side confirmed: a webhook answered 2xx (a channel whose success is a confirmation,
                  see notify.channels), or the agency acknowledged over MQTT (``firelink/dispatch/{agency}/ack``).

The list lives on the dispatch row (``Dispatch.channels``) and is changed only by the core, in the same transaction
as the outbox row it mirrors. These are pure functions over that list.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

PENDING = "pending"
SENT = "sent"
DELIVERED = "delivered"
_RANK = {PENDING: 0, SENT: 1, DELIVERED: 2}


def new(key: str, channel: str) -> dict[str, Any]:
    return {"key": key, "channel": channel, "status": PENDING, "at": None, "attempts": 0, "last_error": ""}


def find(channels: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((c for c in channels if c.get("key") == key), None)


def updated(channels: list[dict[str, Any]], key: str, channel: str, *, status: str | None = None,
            at: datetime | None = None, attempts: int | None = None, error: str | None = None) -> list[dict[str, Any]]:
    """A new list (the JSON column is replaced, not mutated) with the channel `key` changed.

    Status only moves forward (pending → sent → delivered); `at` is when the current status was reached.
    A channel that is not in the list is added as `channel` (an agency may acknowledge over MQTT without an MQTT
    channel row).
    """
    out = [dict(c) for c in channels]
    ch = find(out, key)
    if ch is None:
        ch = new(key, channel)
        out.append(ch)
    if status is not None and _RANK[status] > _RANK.get(ch["status"], 0):
        ch["status"] = status
        ch["at"] = at.isoformat() if at is not None else None
    if attempts is not None:
        ch["attempts"] = attempts
    if error is not None:
        ch["last_error"] = error[:200]
    return out


def status_of(channels: list[dict[str, Any]], key: str) -> str:
    ch = find(channels, key)
    return PENDING if ch is None else str(ch["status"])
