"""Canary scan (RELIABILITY T27 part 1): canary secrets in an account and a customer's email
and phone in the shop's data; every command a user runs — failing paths and DEBUG logging
included — and the connect page (every page signed in, a failing check, pasted keys, a webhook
delivery); the canaries appear nowhere: not in stdout or stderr, the log file, the rendered
pages, the database file and its -wal/-shm, or the dead-letter rows (which are in the database
file)."""

from __future__ import annotations

import base64
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import httpx

from partnersync.auth.vault import Vault
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.webhooks import delivery
from tests.conftest import make_service
from tests.integration.served import served

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


def _browse_the_connect_page(
    root: Path, keys: str, env: dict[str, str], shop: ShopifySandbox, log: Path
) -> list[str]:
    """Every page of the connect page, signed in, with the canaries' account on it (a check that
    passes, one that fails, keys pasted for a second account) and a webhook delivery; returns
    the pages and answers as text."""
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "partnersync",
            "-p",
            str(root),
            "admin",
            "add",
            "ops",
            "--password-env",
            "ADMIN_PASSWORD",
        ],
        env={**env, "ADMIN_PASSWORD": "canary-admin-password"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    seen = [added.stdout + added.stderr]
    with (
        served(root, keys, log, "--allow-loopback", env=env) as base,
        httpx.Client(base_url=base, follow_redirects=True, timeout=30) as browser,
    ):

        def csrf(page: httpx.Response) -> str:
            found = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert found is not None, page.text
            return found.group(1)

        login = browser.get("/login")
        home = browser.post(
            "/login",
            data={"csrf": csrf(login), "username": "ops", "password": "canary-admin-password"},
        )
        token = csrf(home)
        seen += [login.text, home.text]
        seen.append(browser.post("/accounts/shop/check", data={"csrf": token}).text)
        shop.token = "rotated"  # the check fails: its error is on the page
        seen.append(browser.post("/accounts/shop/check", data={"csrf": token}).text)
        shop.token = TOKEN
        seen += [browser.get("/connect").text, browser.get("/connect/shopify").text]
        pasted = browser.post(
            "/connect/shopify",
            data={
                "csrf": token,
                "method": "keys",
                "name": "shop-two",
                "url": shop.url,
                "secret_access_token": TOKEN,
            },
        )
        seen.append(pasted.text)
        hook = delivery("orders/updated", {"id": 1, "email": EMAIL}, secret=WEBHOOK)
        answer = browser.post("/webhooks/shopify/shop", content=hook.body, headers=hook.headers)
        assert answer.status_code == 200
        seen += [answer.text, browser.get("/").text]
    return seen


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
        pages = _browse_the_connect_page(root, keys, env, shop, tmp_path / "serve.err")
        outputs.extend(pages)
        outputs.append((tmp_path / "serve.err").read_text())

    texts = [*outputs, (root / "logs" / "partnersync.log").read_text()]
    for canary in CANARIES:
        for index, text in enumerate(texts):
            assert canary not in text, f"{canary!r} in output {index}: {text[:200]}"
    for path in root.rglob("hub.db*"):
        data = path.read_bytes()
        for canary in CANARIES:
            assert canary.encode() not in data, f"{canary!r} in {path.name}"
