"""Webhook deliveries as the sandbox shop sends them (from Shopify's delivery documentation:
headers ``X-Shopify-Topic``, ``X-Shopify-Hmac-Sha256`` = base64 HMAC-SHA256 of the raw body
keyed with the app's secret, ``X-Shopify-Shop-Domain``, ``X-Shopify-Webhook-Id``,
``X-Shopify-Event-Id``, ``X-Shopify-Triggered-At``, ``X-Shopify-API-Version``) — and the
faults a receiver must survive: duplicates, reordering, tampered bodies, another secret, old
replays. :class:`WebhookSender` delivers the shop's own changes to subscribed URLs, with those
faults when asked."""

from __future__ import annotations

import base64
import hashlib
import hmac
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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


@dataclass
class DeliveryFaults:
    """What the sender does wrong on purpose, as shares of the valid deliveries: send one twice,
    send a tampered copy, one signed with a retired secret, or a replay from 48 hours ago (each
    hostile copy besides the genuine delivery); ``reorder`` shuffles each burst."""

    duplicates: float = 0.0
    tampered: float = 0.0
    old_secret: str | None = None
    old_secret_share: float = 0.0
    stale: float = 0.0
    reorder: bool = False
    seed: int = 0


@dataclass
class _Subscription:
    url: str
    secret: str
    topics: frozenset[str] | None
    faults: DeliveryFaults
    rng: random.Random


class WebhookSender:
    """The shop's webhook subscriptions: every change to a subscribed topic is delivered to the
    subscription's URL from a background thread, signed, with the faults asked for; a genuine
    delivery the receiver does not take (non-2xx or no answer) is sent again, up to 5 times.
    ``sent`` lists (kind, HTTP status) of every attempt — kind ``valid`` or the fault's name."""

    def __init__(self, shop_domain: str, api_version: str = "2026-10") -> None:
        self.shop_domain = shop_domain
        self.api_version = api_version
        self.sent: list[tuple[str, int]] = []
        self._subscriptions: list[_Subscription] = []
        self._queue: queue.Queue[tuple[_Subscription, str, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()

    def subscribe(
        self,
        url: str,
        secret: str,
        *,
        topics: set[str] | None = None,
        faults: DeliveryFaults | None = None,
    ) -> None:
        """Deliver changes of ``topics`` (all when None) to ``url``, signed with ``secret``."""
        with self._lock:
            self._subscriptions.append(
                _Subscription(
                    url,
                    secret,
                    frozenset(topics) if topics else None,
                    faults or DeliveryFaults(),
                    random.Random((faults or DeliveryFaults()).seed),
                )
            )
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="webhooks", daemon=True)
                self._thread.start()

    def changed(self, entity: str, record: dict[str, Any]) -> None:
        """A table row changed: queue its delivery for every subscription of its topic."""
        announced = TOPICS.get(entity)
        if announced is None:
            return
        topic, shape = announced
        for subscription in list(self._subscriptions):
            if subscription.topics is None or topic in subscription.topics:
                self._idle.clear()
                self._queue.put((subscription, topic, shape(record)))

    def drain(self, timeout: float = 30.0) -> bool:
        """Wait until everything queued has been sent; False on timeout."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Stop the sender thread."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=10)

    def _run(self) -> None:
        with httpx.Client(timeout=10.0) as client:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                burst = [first]
                while True:  # everything queued now is one burst
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        self._queue.put(None)
                        break
                    burst.append(item)
                outgoing: list[tuple[str, _Subscription, Delivery]] = []
                for subscription, topic, payload in burst:
                    genuine = delivery(
                        topic,
                        payload,
                        secret=subscription.secret,
                        shop_domain=self.shop_domain,
                        api_version=self.api_version,
                    )
                    outgoing.append(("valid", subscription, genuine))
                    outgoing.extend(
                        (kind, subscription, copy)
                        for kind, copy in self._faulty(genuine, topic, payload, subscription)
                    )
                reordering = [s for _, s, _ in outgoing if s.faults.reorder]
                if reordering:
                    reordering[0].rng.shuffle(outgoing)
                for kind, subscription, message in outgoing:
                    self._send(client, kind, subscription.url, message)
                if self._queue.empty():
                    self._idle.set()

    def _faulty(
        self,
        genuine: Delivery,
        topic: str,
        payload: dict[str, Any],
        subscription: _Subscription,
    ) -> list[tuple[str, Delivery]]:
        faults, rng = subscription.faults, subscription.rng
        copies: list[tuple[str, Delivery]] = []
        if rng.random() < faults.duplicates:
            copies.append(("duplicate", genuine))
        if rng.random() < faults.tampered:
            body = genuine.body.replace(b"}", b',"note":"tampered"}', 1)
            copies.append(("tampered", Delivery(topic, body, genuine.headers)))
        if faults.old_secret and rng.random() < faults.old_secret_share:
            copies.append(
                (
                    "old_secret",
                    delivery(
                        topic, payload, secret=faults.old_secret, shop_domain=self.shop_domain
                    ),
                )
            )
        if rng.random() < faults.stale:
            copies.append(
                (
                    "stale",
                    delivery(
                        topic,
                        payload,
                        secret=subscription.secret,
                        shop_domain=self.shop_domain,
                        triggered_at=datetime.now(UTC) - timedelta(hours=48),
                    ),
                )
            )
        return copies

    def _send(self, client: httpx.Client, kind: str, url: str, item: Delivery) -> None:
        for attempt in range(5 if kind in ("valid", "duplicate") else 1):
            try:
                status = send(url, item, client)
            except httpx.TransportError:
                status = 0
            self.sent.append((kind, status))
            if 200 <= status < 300 or kind not in ("valid", "duplicate"):
                return
            time.sleep(0.2 * (attempt + 1))
