"""JSON text of what the console sends (API answers, WebSocket events): orjson, UTF-8 as is.

orjson encodes a unit list (504 units, 360 KB) in 0.2 ms where `json.dumps` took 2-3 ms of the event loop; what it
cannot encode (an integer beyond 64 bits) goes through `json` instead."""

from __future__ import annotations

import json
from typing import Any

import orjson


def encode(message: Any) -> str:
    try:
        return orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(message, ensure_ascii=False)
