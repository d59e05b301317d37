"""OAuth against the sandbox shop's own authorize and token endpoints (RELIABILITY T26):
`accounts connect` with a loopback redirect, callbacks that are forged or stale, expiring tokens
refreshed once for 16 concurrent calls in 2 processes, and a lost refresh answer recovered
without a human."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import anyio
import httpx
import pytest

from partnersync.auth.oauth2 import ShopifyOAuth, shopify_callback_hmac
from partnersync.auth.vault import Vault
from partnersync.errors import AuthenticationError
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import make_service
from tests.integration.served import authorize_url_of, served

APP_ID, APP_SECRET = "sandbox-client-id", "sandbox-client-secret"


def _cli(project: Path, keys: str, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "partnersync", "-p", str(project), *args],
        env={**os.environ, "PARTNERSYNC_KEYS": keys, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _connect(project: Path, keys: str, shop: ShopifySandbox) -> None:
    """`accounts connect` as a merchant meets it: the URL is opened in a browser (here httpx
    following the redirects), the shop sends the browser back to the loopback listener."""
    process = _cli(
        project,
        keys,
        "accounts",
        "connect",
        "shop",
        "--platform",
        "shopify",
        "--url",
        shop.url,
        "--client-id",
        APP_ID,
        "--client-secret-env",
        "APP_SECRET",
        "--allow-loopback",
        "--option",
        "page_size=8",
        APP_SECRET=APP_SECRET,
    )
    landed = httpx.get(authorize_url_of(process), follow_redirects=True, timeout=10)
    assert landed.status_code == 200
    assert "You can close this window" in landed.text
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "connected" in out


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    root = tmp_path / "project"
    make_service(root, Vault.parse(keys)).close()
    (root / "partnersync.toml").write_text(f'[hub]\ndatabase = "sqlite:///{root / "hub.db"}"\n')
    return root, keys


def test_connect_then_sync_then_refresh_once_for_sixteen_calls_in_two_processes(
    project: tuple[Path, str],
) -> None:
    root, keys = project
    with ShopifySandbox(token="static-token-not-used", restore_rate=1_000_000.0) as shop:
        _connect(root, keys, shop)
        assert shop.oauth.exchanges == 1
        service = make_service(root, Vault.parse(keys))
        stored = service.store.accounts.secrets("shop")
        assert {"access_token", "refresh_token", "expires_at", "client_secret"} <= set(stored)
        service.close()
        # The token stored is neither on disk nor in the log in the clear.
        hub = (root / "hub.db").read_bytes()
        assert stored["access_token"].encode() not in hub
        assert stored["refresh_token"].encode() not in hub

        pull = _cli(root, keys, "sync", "pull", "shop", "orders")
        _, err = pull.communicate(timeout=60)
        assert pull.returncode == 0, err

        shop.oauth.expire_all()
        calls = _cli_script(root, keys, calls=8), _cli_script(root, keys, calls=8)
        for process in calls:
            out, err = process.communicate(timeout=60)
            assert process.returncode == 0, err
            assert out.strip() == "8 ok"
        assert shop.oauth.refreshes == 1  # one refresh for 16 calls in 2 processes
        log = (root / "logs" / "partnersync.log").read_text()
        fresh = make_service(root, Vault.parse(keys))
        rotated = fresh.store.accounts.secrets("shop")
        fresh.close()
        assert rotated["refresh_token"] != stored["refresh_token"]
        for secret in (stored["access_token"], rotated["access_token"], APP_SECRET):
            assert secret not in log


def _cli_script(root: Path, keys: str, *, calls: int) -> subprocess.Popen[str]:
    """One process making ``calls`` concurrent authenticated calls through one service."""
    script = f"""
import anyio
from pathlib import Path
from partnersync.config import load_project
from partnersync.logs import configure_logging
from partnersync.service import Partnersync

project = load_project(Path({str(root)!r}))
service = Partnersync(project, redactor=configure_logging(project.log_file))
done = []

async def call():
    await service.test_account("shop")
    done.append(1)

async def main():
    async with anyio.create_task_group() as group:
        for _ in range({calls}):
            group.start_soon(call)

anyio.run(main)
print(len(done), "ok")
"""
    return subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "PARTNERSYNC_KEYS": keys},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_lost_refresh_answer_is_recovered_without_a_human(project: tuple[Path, str]) -> None:
    root, keys = project
    with ShopifySandbox(token="static-token-not-used", restore_rate=1_000_000.0) as shop:
        _connect(root, keys, shop)
        shop.oauth.expire_all()
        shop.oauth.drop_refresh_answers = 1  # the shop rotates, the answer never arrives
        pull = _cli(root, keys, "sync", "pull", "shop", "orders")
        _, err = pull.communicate(timeout=60)
        assert pull.returncode == 0, err
        assert shop.oauth.refreshes == 2  # the lost one, then the same refresh token again
        again = _cli(root, keys, "sync", "pull", "shop", "orders")
        _, err = again.communicate(timeout=60)
        assert again.returncode == 0, err
        assert shop.oauth.refreshes == 2  # the stored pair is fresh: no refresh


def test_forged_replayed_or_stale_callbacks_are_refused() -> None:
    flow = ShopifyOAuth(
        "https://shop.example", APP_ID, APP_SECRET, scopes="read_orders", redirect_uri="x"
    )
    url, state = flow.authorization_url()
    assert f"state={state}" in url
    now = time.time()
    params = {"code": "c0de", "shop": "s", "state": state, "timestamp": str(int(now))}
    good = {**params, "hmac": shopify_callback_hmac(params, APP_SECRET)}
    assert flow.verify_callback(good, state, now) == "c0de"
    with pytest.raises(AuthenticationError, match="hmac"):
        flow.verify_callback({**good, "code": "other"}, state, now)
    with pytest.raises(AuthenticationError, match="hmac"):
        flow.verify_callback({**params, "hmac": shopify_callback_hmac(params, "wrong")}, state, now)
    with pytest.raises(AuthenticationError, match="state"):
        flow.verify_callback(good, "another-state", now)
    with pytest.raises(AuthenticationError, match="a day old"):
        flow.verify_callback(good, state, now + 2 * 86400)


def test_a_refused_refresh_token_asks_for_a_new_connection(project: tuple[Path, str]) -> None:
    root, keys = project
    with ShopifySandbox(token="static-token-not-used", restore_rate=1_000_000.0) as shop:
        _connect(root, keys, shop)
        service = make_service(root, Vault.parse(keys))
        service.store.accounts.update_secrets("shop", {"refresh_token": "shprt_revoked"})
        shop.oauth.expire_all()
        with pytest.raises(AuthenticationError, match="connect the account again"):
            anyio.run(service.test_account, "shop")
        service.close()


def test_a_woocommerce_store_hands_its_keys_to_partnersync_serve(
    project: tuple[Path, str], tmp_path: Path
) -> None:
    """WooCommerce's app authorisation (`/wc-auth/v1/authorize`): the owner approves, the store
    posts a new key pair to `partnersync serve`, the account works with it; a post for a
    connection nobody started, or a second post for the same one, is refused."""
    from partnersync.sandbox.woocommerce import WooCommerceSandbox

    root, keys = project
    with served(root, keys, tmp_path / "serve.err") as public, WooCommerceSandbox() as store:
        forged = httpx.post(
            f"{public}/connect/woocommerce/callback/nobody-started-this",
            json={"user_id": "nobody-started-this", "consumer_key": "ck_x"},
        )
        assert forged.status_code == 401
        connect = _cli(
            root,
            keys,
            "accounts",
            "connect",
            "woo",
            "--platform",
            "woocommerce",
            "--url",
            store.url,
            "--public-url",
            public,
            "--allow-loopback",
        )
        authorize_url = authorize_url_of(connect)
        landed = httpx.get(authorize_url, follow_redirects=True, timeout=10)
        assert landed.status_code == 200
        assert "Connected" in landed.text
        out, err = connect.communicate(timeout=30)
        assert "connected" in out
        assert connect.returncode == 0, err
        assert len(store.issued_keys) == 1
        (issued_key,) = store.issued_keys
        state = dict(parse_qsl(urlsplit(authorize_url).query))["user_id"]
        replayed = httpx.post(
            f"{public}/connect/woocommerce/callback/{state}",
            json={"user_id": state, "consumer_key": "ck_evil", "consumer_secret": "cs_evil"},
        )
        assert replayed.status_code == 401  # one use
        service = make_service(root, Vault.parse(keys))
        assert service.store.accounts.secrets("woo")["consumer_key"] == issued_key
        service.close()
        pull = _cli(root, keys, "sync", "pull", "woo", "products")
        _, err = pull.communicate(timeout=60)
        assert pull.returncode == 0, err
