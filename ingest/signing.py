"""HMAC-SHA256 over the exact body bytes: how Firelink signs what it sends to agencies (notify) and checks what a
gateway sends it (the 96119 hotline's complaints). One format both ways: `sha256=<hex>` in X-Firelink-Signature."""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Firelink-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` is the signature of `body` under `secret` (compared in constant time)."""
    return header is not None and hmac.compare_digest(sign(secret, body).encode(), header.encode("utf-8", "replace"))
