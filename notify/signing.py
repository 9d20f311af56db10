"""How an agency verifies a Firelink dispatch: HMAC-SHA256 over the exact body bytes (ingest.signing: the same
format checks what the 96119 hotline gateway sends in)."""

from __future__ import annotations

import json
from typing import Any

from ingest.signing import SIGNATURE_HEADER, sign, verify

__all__ = ["IDEMPOTENCY_HEADER", "SIGNATURE_HEADER", "encode_body", "sign", "verify"]

IDEMPOTENCY_HEADER = "Idempotency-Key"


def encode_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode("utf-8")
