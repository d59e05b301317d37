"""Webhooks (RELIABILITY T25): 1,000 deliveries from the sandbox shop to `partnersync serve` —
tampered bodies, a wrong secret, the old secret after a rotation, duplicates, reordering and
48-hour-old replays. Tampered and unsigned deliveries get 401 and change nothing; each valid
delivery is applied once; the hub ends equal to the platform."""

from __future__ import annotations

import base64
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from partnersync.auth.vault import Vault
from partnersync.auth.webhooks import body_signature, signature_matches
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.webhooks import (
    Delivery,
    DeliveryFaults,
    delivery,
    order_payload,
    send,
)
from partnersync.sandbox.woocommerce import WooCommerceSandbox
from tests.conftest import SHOP_TOKEN, _fresh_pg_schema, _postgres_url, make_service
from tests.integration.served import served
from tests.integration.unattended import WEBHOOK_SECRET, World

SECRET, OLD_SECRET = "whsec-current", "whsec-before-rotation"


def test_signatures_are_checked_on_the_raw_bytes() -> None:
    body = b'{"id": 1, "note": "caf\\u00e9"}'
    good = body_signature(body, SECRET)
    assert signature_matches(body, good, [SECRET])
    assert signature_matches(body, good, ["another", SECRET])
    assert not signature_matches(body + b" ", good, [SECRET])  # re-serialised: refused
    assert not signature_matches(body, good, [OLD_SECRET])
    assert not signature_matches(body, None, [SECRET])
    assert not signature_matches(body, good, [""])


@pytest.mark.slow
def test_a_thousand_hostile_deliveries_apply_each_valid_one_once(tmp_path: Path) -> None:
    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    root = tmp_path / "project"
    rng = random.Random(25)
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, orders=120) as shop:
        service = make_service(root, Vault.parse(keys))
        service.add_account(
            name="shop",
            platform="shopify",
            base_url=shop.url,
            secrets={"access_token": SHOP_TOKEN, "webhook_secret": SECRET},
            options={"page_size": 50},
            allow_loopback=True,
        )
        service.close()
        (root / "partnersync.toml").write_text(f'[hub]\ndatabase = "sqlite:///{root / "hub.db"}"\n')
        with served(root, keys, tmp_path / "serve.err") as base:
            url = f"{base}/webhooks/shopify/shop"
            anyio_pull(root, keys)  # the hub starts equal to the shop

            changed = shop.data.touch("orders", 60)  # 60 orders change on the shop
            orders = shop.data.tables["orders"]
            valid: list[Delivery] = []
            for order_id in changed:
                valid.append(
                    delivery(
                        "orders/updated",
                        order_payload(orders[order_id]),
                        secret=SECRET,
                        event_id=f"evt-{order_id}",
                    )
                )
            hostile: list[tuple[str, Delivery]] = []
            while len(valid) + len(hostile) < 1000:
                original = rng.choice(valid)
                kind = rng.choice(["duplicate", "tampered", "wrong", "old", "replay", "unsigned"])
                if kind == "duplicate":
                    hostile.append((kind, original))
                elif kind == "tampered":
                    body = original.body.replace(b'"name":"', b'"name":"X', 1)
                    hostile.append((kind, Delivery(original.topic, body, original.headers)))
                elif kind == "wrong":
                    payload = order_payload(orders[rng.choice(changed)])
                    hostile.append((kind, delivery("orders/updated", payload, secret="guess")))
                elif kind == "old":
                    payload = order_payload(orders[rng.choice(changed)])
                    hostile.append((kind, delivery("orders/updated", payload, secret=OLD_SECRET)))
                elif kind == "replay":
                    hostile.append(
                        (
                            kind,
                            delivery(
                                "orders/updated",
                                order_payload(orders[rng.choice(changed)]),
                                secret=SECRET,
                                triggered_at=datetime.now(UTC) - timedelta(hours=48),
                            ),
                        )
                    )
                else:
                    headers = dict(original.headers)
                    del headers["X-Shopify-Hmac-Sha256"]
                    hostile.append((kind, Delivery(original.topic, original.body, headers)))
            batch = [("valid", item) for item in valid] + hostile
            rng.shuffle(batch)  # out of order, duplicates before their originals
            with httpx.Client(timeout=30) as client, ThreadPoolExecutor(16) as pool:
                statuses = list(pool.map(lambda pair: (pair[0], send(url, pair[1], client)), batch))
            assert len(statuses) == 1000
            refused = {"tampered", "wrong", "old", "replay", "unsigned"}
            for kind, status in statuses:
                if kind in refused:
                    assert status == 401, kind
                else:
                    assert status == 200, kind

            probe = make_service(root, Vault.parse(keys))
            # Each valid delivery recorded once; nothing from the refused ones.
            assert probe.store.webhooks.count("shop") == len(valid)
            # The hub catches up with the shop within seconds, by the pulls the deliveries
            # asked for (no sync command is run here).
            newest = max(orders[o]["updatedAt"] for o in changed)
            deadline = time.monotonic() + 30
            while True:
                cursor = probe.store.cursors.get("shop", "orders")
                if cursor and datetime.fromisoformat(cursor) >= datetime.fromisoformat(newest):
                    break
                assert time.monotonic() < deadline, "the hub did not catch up"
                time.sleep(0.2)
            pulls = [r for r in probe.runs(limit=100) if r["direction"] == "pull"]
            assert 2 <= len(pulls) <= 1 + len(valid)  # coalesced, far fewer than deliveries
            for order_id in changed:
                record = probe.record("shop", "orders", order_id)
                assert record["data"]["updated_at"].startswith(orders[order_id]["updatedAt"][:19])
            probe.close()


def anyio_pull(root: Path, keys: str, account: str = "shop") -> None:
    """``sync pull ACCOUNT orders`` in its own process; it must succeed."""
    pull = subprocess.run(
        [sys.executable, "-m", "partnersync", "-p", str(root), "sync", "pull", account, "orders"],
        env={**os.environ, "PARTNERSYNC_KEYS": keys},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert pull.returncode == 0, pull.stderr


HOSTILE = DeliveryFaults(
    duplicates=0.4,
    tampered=0.4,
    old_secret=OLD_SECRET,
    old_secret_share=0.4,
    stale=0.4,
    reorder=True,
    seed=25,
)


def _caught_up(world: World, changed: list[str]) -> bool:
    """True once the hub's orders cursor has passed the newest change."""
    orders = world.shop.data.tables["orders"]
    newest = max(orders[o]["updatedAt"] for o in changed)
    cursor = world.rows("SELECT value FROM cursors WHERE account = 'shop' AND entity = 'orders'")
    return bool(cursor) and datetime.fromisoformat(cursor[0].value) >= datetime.fromisoformat(
        newest
    )


def _hub_equals_shop(world: World, changed: list[str]) -> None:
    probe = make_service(world.root, Vault.parse(world.keys), world.url)
    orders = world.shop.data.tables["orders"]
    for order_id in changed:
        record = probe.record("shop", "orders", order_id)
        assert record["data"]["updated_at"].startswith(orders[order_id]["updatedAt"][:19])
    probe.close()


def test_the_shop_delivers_its_own_changes_with_faults_and_the_hub_follows(
    world_factory: Callable[..., World], tmp_path: Path
) -> None:
    world = world_factory()
    shop = world.shop
    initial = world.start("sync", "pull", "shop", "orders")
    assert initial.wait(60) == 0
    with served(world.root, world.keys, tmp_path / "serve.err") as base:
        shop.webhooks.subscribe(
            f"{base}/webhooks/shopify/shop",
            WEBHOOK_SECRET,
            topics={"orders/updated"},
            faults=HOSTILE,
        )
        changed = shop.data.touch("orders", 25)
        assert shop.webhooks.drain(60)
        world.wait_for(lambda: _caught_up(world, changed), 30)
    _hub_equals_shop(world, changed)
    kinds = {kind for kind, _ in shop.webhooks.sent}
    assert {"valid", "duplicate", "tampered", "old_secret", "stale"} <= kinds
    for kind, status in shop.webhooks.sent:
        assert status == (200 if kind in ("valid", "duplicate") else 401), kind
    accepted = world.rows("SELECT COUNT(*) AS n FROM webhook_deliveries WHERE account = 'shop'")
    assert accepted[0].n == 25  # each genuine delivery once, however often it came


@pytest.mark.postgres
def test_with_workers_the_pulls_deliveries_ask_for_run_on_a_worker(
    world_factory: Callable[..., World], tmp_path: Path
) -> None:
    world = world_factory(database_url=_fresh_pg_schema(_postgres_url()))
    shop = world.shop
    assert world.start("db", "upgrade").wait(60) == 0
    assert world.start("sync", "pull", "shop", "orders").wait(60) == 0
    before = {row.id for row in world.rows("SELECT id FROM runs")}
    worker = world.start("worker", "--concurrency", "1", "--heartbeat", "1")
    with served(world.root, world.keys, tmp_path / "serve.err", "--executor", "workers") as base:
        shop.webhooks.subscribe(f"{base}/webhooks/shopify/shop", WEBHOOK_SECRET)
        changed = shop.data.touch("orders", 12)
        assert shop.webhooks.drain(60)
        world.wait_for(lambda: _caught_up(world, changed), 45)
    _hub_equals_shop(world, changed)
    worker.send_signal(signal.SIGTERM)
    _, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err
    pulls = [
        row
        for row in world.rows("SELECT id, holder, status FROM runs WHERE direction = 'pull'")
        if row.id not in before
    ]
    assert pulls, "a delivery made a pull"
    assert all(row.holder.split(":")[1] == str(worker.pid) for row in pulls)  # on the worker
    assert all(row.status == "succeeded" for row in pulls)


def test_a_woocommerce_store_delivers_through_the_webhook_its_own_client_created(
    tmp_path: Path,
) -> None:
    from woocommerce import API

    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    root = tmp_path / "project"
    with WooCommerceSandbox(orders=20) as store:
        service = make_service(root, Vault.parse(keys))
        service.add_account(
            name="woo",
            platform="woocommerce",
            base_url=store.url,
            secrets={**store.credentials(), "webhook_secret": "wc-secret-0123"},
            allow_loopback=True,
        )
        service.close()
        (root / "partnersync.toml").write_text(f'[hub]\ndatabase = "sqlite:///{root / "hub.db"}"\n')
        anyio_pull(root, keys, "woo")
        client = API(
            url=store.url,
            consumer_key=store.consumer_key,
            consumer_secret=store.consumer_secret,
            version="wc/v3",
            timeout=10,
        )
        with served(root, keys, tmp_path / "serve.err") as base:
            target = f"{base}/webhooks/woocommerce/woo"
            made = client.post(
                "webhooks",
                {
                    "name": "partnersync",
                    "topic": "order.updated",
                    "delivery_url": target,
                    "secret": "wc-secret-0123",
                },
            )
            assert made.status_code == 201, made.text
            forged = client.post(
                "webhooks",
                {"topic": "order.updated", "delivery_url": target, "secret": "not-ours"},
            )
            assert forged.status_code == 201
            changed = sorted(store.data.orders)[:8]
            for order_id in changed:
                store.data.update_order(order_id, {"status": "completed"})
            assert store.webhooks.drain(60)

            probe = make_service(root, Vault.parse(keys))
            deadline = time.monotonic() + 30
            while True:
                done = [
                    probe.record("woo", "orders", str(order_id))["data"]["updated_at"]
                    for order_id in changed
                ]
                wanted = [store.data.orders[o]["date_modified_gmt"] for o in changed]
                if all(d.startswith(w[:19]) for d, w in zip(done, wanted, strict=True)):
                    break
                assert time.monotonic() < deadline, "the hub did not catch up"
                time.sleep(0.2)
            assert probe.store.webhooks.count("woo") == len(changed)
            probe.close()
            answers = [status for _, status in store.webhooks.sent]
            assert answers.count(200) == len(changed)
            assert set(answers) == {200, 401}
            # The store gave up on the webhook with the wrong secret after five failures in a
            # row, as WooCommerce does; the right one stays active.
            listed = client.get("webhooks").json()
            assert sorted(hook["status"] for hook in listed) == ["active", "disabled"]
            assert all("secret" not in hook for hook in listed)
