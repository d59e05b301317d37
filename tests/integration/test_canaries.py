"""Canary scan (RELIABILITY T27 part 1): canary secrets in an account and a customer's email
and phone in the shop's data; every command a user runs — failing paths and DEBUG logging
included; the canaries appear nowhere: not in stdout or stderr, the
log file, the database file and its -wal/-shm, or the dead-letter rows (which are in the
database file)."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

from partnersync.auth.vault import Vault
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import make_service

TOKEN = "shpat_CANARYTOKEN_8d1f27c4a9"
WEBHOOK = "whsec_CANARYHOOK_55e0b1"
EMAIL = "canary.pii.3a7e@example.com"
PHONE = "+15550199777"
CANARIES = (TOKEN, WEBHOOK, EMAIL, PHONE)


def _plant_customer(shop: ShopifySandbox) -> str:
    order_id = next(iter(shop.data.tables["orders"]))
    order = shop.data.tables["orders"][order_id]
    order["email"] = order["customer"]["email"] = EMAIL
    order["phone"] = order["customer"]["phone"] = PHONE
    order["shippingAddress"] = {**order["shippingAddress"], "phone": PHONE}
    order["billingAddress"] = {**order["billingAddress"], "phone": PHONE}
    return str(order_id)


def test_canaries_never_leave_the_vault(tmp_path: Path) -> None:
    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    root = tmp_path / "project"
    outputs: list[str] = []
    with ShopifySandbox(token=TOKEN, restore_rate=1_000_000.0) as shop:
        order_id = _plant_customer(shop)
        make_service(root, Vault.parse(keys)).close()
        (root / "partnersync.toml").write_text(f'[hub]\ndatabase = "sqlite:///{root / "hub.db"}"\n')
        env = {
            **os.environ,
            "PARTNERSYNC_KEYS": keys,
            "PARTNERSYNC_LOG_LEVEL": "DEBUG",
            "CANARY_TOKEN": TOKEN,
            "CANARY_HOOK": WEBHOOK,
        }

        def run(*args: str) -> int:
            done = subprocess.run(
                [sys.executable, "-m", "partnersync", "-p", str(root), *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            outputs.append(done.stdout + done.stderr)
            return done.returncode

        assert (
            run(
                "accounts",
                "add",
                "shop",
                "--platform",
                "shopify",
                "--url",
                shop.url,
                "--secret-env",
                "access_token=CANARY_TOKEN",
                "--secret-env",
                "webhook_secret=CANARY_HOOK",
                "--allow-loopback",
            )
            == 0
        )
        assert run("accounts", "test", "shop") == 0
        assert run("accounts", "show", "shop", "--json") == 0
        assert run("accounts", "list") == 0
        assert run("sync", "pull", "shop", "all") == 0
        assert run("sync", "pull", "shop", "orders", "--full", "--json") == 0
        assert run("records", "list", "shop", "orders") == 0
        assert run("records", "show", "shop", "orders", order_id) == 0
        assert run("records", "show", "shop", "orders", order_id, "--json") == 0
        assert run("mapping", "preview", "shop", "orders") == 0
        assert run("runs", "list", "--json") == 0
        assert run("status", "--json") == 0
        assert run("config", "show", "--json") == 0
        assert run("doctor") == 0
        # Failing paths: the shop refuses the token; a page of orders cannot be mapped.
        shop.token = "rotated"
        assert run("accounts", "test", "shop") != 0
        assert run("sync", "pull", "shop", "orders", "--full") != 0
        shop.token = TOKEN
        order = shop.data.tables["orders"][order_id]
        order["totalPriceSet"] = {"shopMoney": {"amount": "not money", "currencyCode": "USD"}}
        shop.data.touch("orders", 0)
        order["updatedAt"] = "2099-01-01T00:00:00Z"
        assert run("sync", "pull", "shop", "orders") in (0, 4)
        assert run("dlq", "list", "--json") == 0

    texts = [*outputs, (root / "logs" / "partnersync.log").read_text()]
    for canary in CANARIES:
        for index, text in enumerate(texts):
            assert canary not in text, f"{canary!r} in output {index}: {text[:200]}"
    for path in root.rglob("hub.db*"):
        data = path.read_bytes()
        for canary in CANARIES:
            assert canary.encode() not in data, f"{canary!r} in {path.name}"
