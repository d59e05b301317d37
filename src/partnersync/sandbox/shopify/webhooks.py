"""Webhook deliveries as the sandbox shop sends them (from Shopify's delivery documentation:
headers ``X-Shopify-Topic``, ``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the raw body
keyed with the app's secret, ``X-Shopify-Shop-Domain``, ``X-Shopify-Webhook-Id``,
``X-Shopify-Event-Id``, ``X-Shopify-Triggered-At``, ``X-Shopify-API-Version``) — and the
faults a receiver must survive: duplicates, reordering, tampered bodies, another secret, old
replays."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson


@dataclass(frozen=True)
class Delivery:
    """One delivery, ready to send (or to tamper with)."""

    topic: str
    body: bytes
    headers: dict[str, str]


def delivery(
    topic: str,
    payload: dict[str, Any],
    *,
    secret: str,
    shop_domain: str = "sandbox-shop.myshopify.com",
    event_id: str | None = None,
    triggered_at: datetime | None = None,
    api_version: str = "2026-10",
) -> Delivery:
    """A delivery of ``payload`` signed with ``secret``."""
    body = orjson.dumps(payload)
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    moment = (triggered_at or datetime.now(UTC)).isoformat()
    return Delivery(
        topic,
        body,
        {
            "Content-Type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": signature.decode(),
            "X-Shopify-Shop-Domain": shop_domain,
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
            "X-Shopify-Event-Id": event_id or str(uuid.uuid4()),
            "X-Shopify-Triggered-At": moment,
            "X-Shopify-API-Version": api_version,
        },
    )


def order_payload(order: dict[str, Any]) -> dict[str, Any]:
    """The REST shape of an order as ``orders/updated`` carries it (the fields a receiver
    reads: ids, name, timestamps)."""
    numeric = int(str(order["id"]).rsplit("/", 1)[-1])
    return {
        "id": numeric,
        "admin_graphql_api_id": order["id"],
        "name": order.get("name"),
        "updated_at": order.get("updatedAt"),
        "created_at": order.get("createdAt"),
    }


def send(url: str, item: Delivery, client: httpx.Client) -> int:
    """POST one delivery; returns the receiver's status."""
    return client.post(url, content=item.body, headers=item.headers).status_code
