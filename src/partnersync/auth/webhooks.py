"""Webhook signatures: base64 HMAC-SHA256 of the raw body, compared in constant time."""

from __future__ import annotations

import base64
import hashlib
import hmac


def body_signature(body: bytes, secret: str) -> str:
    """base64(HMAC-SHA256(secret, body)) — how Shopify and WooCommerce sign deliveries."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def signature_matches(body: bytes, header: str | None, secrets: list[str]) -> bool:
    """True when ``header`` is the signature of the raw ``body`` under one of ``secrets``."""
    if not header:
        return False
    presented = header.strip().encode()
    return any(
        hmac.compare_digest(presented, body_signature(body, secret).encode())
        for secret in secrets
        if secret
    )
