"""Webhook deliveries as the sandbox shop sends them (from Shopify's delivery documentation:
headers ``X-Shopify-Topic``, ``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the raw body
keyed with the app's secret, ``X-Shopify-Shop-Domain``, ``X-Shopify-Webhook-Id``,
``X-Shopify-Event-Id``, ``X-Shopify-Triggered-At``, ``X-Shopify-API-Version``) — and the
faults a receiver must survive: duplicates, reordering, tampered bodies, another secret, old
replays. :func:`shop_sender` delivers the shop's own changes to subscribed URLs, with those
faults when asked (:mod:`partnersync.sandbox.webhooks`)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from partnersync.sandbox.webhooks import Delivery, DeliveryFaults, WebhookSender, send


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


def product_payload(product: dict[str, Any]) -> dict[str, Any]:
    """The REST shape of a product as ``products/update`` carries it (ids, title, timestamps)."""
    return {
        "id": int(str(product["id"]).rsplit("/", 1)[-1]),
        "admin_graphql_api_id": product["id"],
        "title": product.get("title"),
        "updated_at": product.get("updatedAt"),
    }


def level_payload(level: dict[str, Any]) -> dict[str, Any]:
    """``inventory_levels/update``: the item, the location and what is available."""
    return {
        "inventory_item_id": int(str(level.get("_item", "0")).rsplit("/", 1)[-1]),
        "location_id": int(str(level.get("_location", "0")).rsplit("/", 1)[-1]),
        "available": level.get("quantities", {}).get("available"),
        "updated_at": level.get("updatedAt"),
    }


TOPICS = {
    "orders": ("orders/updated", order_payload),
    "products": ("products/update", product_payload),
    "inventory_levels": ("inventory_levels/update", level_payload),
}
"""What a change to a sandbox table is announced as."""


def announce(entity: str, record: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The topic and payload a change to a sandbox table is delivered as."""
    announced = TOPICS.get(entity)
    if announced is None:
        return None
    topic, shape = announced
    return topic, shape(record)


def shop_sender(shop_domain: str, api_version: str = "2026-10") -> WebhookSender:
    """The shop's webhook sender (Shopify retries a failed delivery; it does not disable)."""

    def build(
        topic: str, payload: dict[str, Any], secret: str, sent_at: datetime | None
    ) -> Delivery:
        return delivery(
            topic,
            payload,
            secret=secret,
            shop_domain=shop_domain,
            triggered_at=sent_at,
            api_version=api_version,
        )

    return WebhookSender(build, announce)


__all__ = [
    "Delivery",
    "DeliveryFaults",
    "WebhookSender",
    "announce",
    "delivery",
    "order_payload",
    "send",
    "shop_sender",
]
