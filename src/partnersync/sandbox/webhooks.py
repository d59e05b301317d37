"""Webhook deliveries from a sandbox to the URLs subscribed to it, as platforms send them — a
background sender that retries what the receiver did not take — and the faults a receiver
must survive: duplicates, reordering, tampered bodies, a retired secret, old replays. Each
platform's sandbox says how its deliveries are built and which changes it announces."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


@dataclass(frozen=True)
class Delivery:
    """One delivery, ready to send (or to tamper with)."""

    topic: str
    body: bytes
    headers: dict[str, str]


def send(url: str, item: Delivery, client: httpx.Client) -> int:
    """POST one delivery; returns the receiver's status."""
    return client.post(url, content=item.body, headers=item.headers).status_code


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
class Subscription:
    url: str
    secret: str
    topics: frozenset[str] | None
    faults: DeliveryFaults
    rng: random.Random
    failures: int = 0
    disabled: bool = False


Build = Callable[[str, dict[str, Any], str, datetime | None], Delivery]
"""(topic, payload, secret, sent at or None for now) → a signed delivery, as the platform
makes it."""
Announce = Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]] | None]
"""(table, changed record) → (topic, payload), or None when the change is not announced."""


class WebhookSender:
    """A sandbox's webhook subscriptions: every change to a subscribed topic is delivered to the
    subscription's URL from a background thread, signed, with the faults asked for; a genuine
    delivery the receiver does not take (non-2xx or no answer) is tried ``attempts`` times in
    all (Shopify retries; WooCommerce does not). With ``disable_after``, a subscription whose
    deliveries failed that many times in a row is disabled (WooCommerce: 5). ``sent`` lists
    (kind, HTTP status) of every attempt — kind ``valid`` or the fault's name."""

    def __init__(
        self,
        build: Build,
        announce: Announce,
        *,
        attempts: int = 5,
        disable_after: int | None = None,
    ) -> None:
        self.build = build
        self.announce = announce
        self.attempts = attempts
        self.disable_after = disable_after
        self.sent: list[tuple[str, int]] = []
        self.subscriptions: list[Subscription] = []
        self._queue: queue.Queue[tuple[Subscription, str, dict[str, Any]] | None] = queue.Queue()
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
            self.subscriptions.append(
                Subscription(
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
        announced = self.announce(entity, record)
        if announced is None:
            return
        topic, payload = announced
        for subscription in list(self.subscriptions):
            if subscription.disabled:
                continue
            if subscription.topics is None or topic in subscription.topics:
                self._idle.clear()
                self._queue.put((subscription, topic, payload))

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
                outgoing: list[tuple[str, Subscription, Delivery]] = []
                for subscription, topic, payload in burst:
                    genuine = self.build(topic, payload, subscription.secret, None)
                    outgoing.append(("valid", subscription, genuine))
                    outgoing.extend(
                        (kind, subscription, copy)
                        for kind, copy in self._faulty(genuine, topic, payload, subscription)
                    )
                reordering = [s for _, s, _ in outgoing if s.faults.reorder]
                if reordering:
                    reordering[0].rng.shuffle(outgoing)
                for kind, subscription, message in outgoing:
                    self._send(client, kind, subscription, message)
                if self._queue.empty():
                    self._idle.set()

    def _faulty(
        self,
        genuine: Delivery,
        topic: str,
        payload: dict[str, Any],
        subscription: Subscription,
    ) -> list[tuple[str, Delivery]]:
        faults, rng = subscription.faults, subscription.rng
        copies: list[tuple[str, Delivery]] = []
        if rng.random() < faults.duplicates:
            copies.append(("duplicate", genuine))
        if rng.random() < faults.tampered:
            body = genuine.body.replace(b"}", b',"note":"tampered"}', 1)
            copies.append(("tampered", Delivery(topic, body, genuine.headers)))
        if faults.old_secret and rng.random() < faults.old_secret_share:
            copies.append(("old_secret", self.build(topic, payload, faults.old_secret, None)))
        if rng.random() < faults.stale:
            old = datetime.now(UTC) - timedelta(hours=48)
            copies.append(("stale", self.build(topic, payload, subscription.secret, old)))
        return copies

    def _send(
        self, client: httpx.Client, kind: str, subscription: Subscription, item: Delivery
    ) -> None:
        genuine = kind in ("valid", "duplicate")
        for attempt in range(self.attempts if genuine else 1):
            try:
                status = send(subscription.url, item, client)
            except httpx.TransportError:
                status = 0
            self.sent.append((kind, status))
            if not genuine:
                return
            if 200 <= status < 300:
                subscription.failures = 0
                return
            subscription.failures += 1
            if self.disable_after is not None and subscription.failures >= self.disable_after:
                subscription.disabled = True
                return
            time.sleep(0.2 * (attempt + 1))
