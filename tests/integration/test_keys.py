"""Encryption keys: never a new key over data made with another; rotation re-encrypts all."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN
from tests.integration.test_cli import Cli, add_shop

PULL_ORDERS = ("sync", "pull", "shop", "orders")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_keys_are_guarded_checked_rotated_and_retired(tmp_path: Path, shop: ShopifySandbox) -> None:
    cli = Cli(tmp_path / "project")
    cli("init", str(cli.project))
    add_shop(cli, shop)
    cli("sync", "pull", "shop", "orders")
    key_file = cli.project / ".partnersync" / "key"
    assert mode(key_file) == 0o600
    assert mode(cli.project / "hub.db") == 0o600
    assert mode(cli.project / "logs" / "partnersync.log") == 0o600
    assert mode(cli.project / "logs") == 0o700

    report = json.loads(cli("keys", "check", "--json").stdout)
    assert report["ring"] == ["k1"]
    assert report["in_use"]["k1"] == len(shop.data.tables["orders"]) + 1  # orders + the account
    assert (report["missing"], report["unreadable"]) == ([], 0)

    # The key file goes missing: nothing suggests a step that would lose the data.
    key_file.rename(tmp_path / "key.bak")
    lost = cli("runs", "list", expect=2)
    assert "restore the key file" in lost.stderr
    refused = cli("keys", "init", expect=2)
    assert "the hub's data is under key k1" in refused.stderr
    assert "the hub's data is under key k1" in cli("init", str(cli.project), expect=2).stderr
    assert not key_file.exists()
    (tmp_path / "key.bak").rename(key_file)

    rotated = cli("keys", "rotate")
    assert "primary key now k2" in rotated.stdout
    after = json.loads(cli("keys", "check", "--json").stdout)
    assert after["ring"] == ["k2", "k1"]
    assert set(after["in_use"]) == {"k2"}
    order_id = sorted(shop.data.tables["orders"])[0]
    record = json.loads(cli("records", "show", "shop", "orders", order_id, "--json").stdout)
    assert record["data"]["origin"]["external_id"] == order_id
    assert "still under" not in cli("keys", "retire", "k1").stderr
    assert json.loads(cli("keys", "check", "--json").stdout)["ring"] == ["k2"]
    cli("accounts", "test", "shop")  # the account's secret decrypts under the new key
    assert mode(key_file) == 0o600
    assert SHOP_TOKEN not in key_file.read_text()
    assert "primary" in cli("keys", "retire", "k2", expect=2).stderr


def test_rotation_while_a_sync_runs_leaves_nothing_under_the_old_key(tmp_path: Path) -> None:
    """`keys rotate` while a slow pull of orders (encrypted at rest) writes page after page in
    another process: the running process follows the new key file, the rotation sweeps what it
    sealed meanwhile, the old key can be retired, and every row still reads."""
    import subprocess
    import sys
    import time

    from sqlalchemy import create_engine, text

    from partnersync.auth.vault import Vault
    from partnersync.errors import VaultError

    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, orders=80) as slow:
        slow.faults.latency = 0.2  # 80 orders in pages of 8: ~3 s of pulling
        cli = Cli(tmp_path / "project")
        cli("init", str(cli.project))
        add_shop(cli, slow, option="page_size=8")
        env = {**os.environ, "SHOP_TOKEN": SHOP_TOKEN}
        env.pop("PARTNERSYNC_KEYS", None)
        pull = subprocess.Popen(
            [sys.executable, "-m", "partnersync", "-p", str(cli.project), *PULL_ORDERS],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        engine = create_engine(f"sqlite:///{cli.project / 'hub.db'}")
        deadline = time.monotonic() + 30
        while True:
            with engine.connect() as connection:
                pages = connection.execute(text("SELECT max(pages) FROM runs")).scalar()
            if pages and pages >= 2:
                break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rotated = cli("keys", "rotate")
        assert "k2" in rotated.stdout
        _, err = pull.communicate(timeout=60)
        assert pull.returncode == 0, err
    report = json.loads(cli("keys", "check", "--json").stdout)
    assert set(report["in_use"]) == {"k2"}, report["in_use"]
    assert report["in_use"]["k2"] == 80 + 1  # every order and the account
    cli("keys", "retire", "k1")
    assert json.loads(cli("keys", "check", "--json").stdout)["ring"] == ["k2"]
    # Every row reads under the ring left; two rows' ciphertexts swapped do not.
    vault = Vault.load(cli.project / ".partnersync" / "key")
    with engine.begin() as connection:
        rows = connection.execute(
            text("SELECT id, canonical_key, data FROM records WHERE entity = 'orders'")
        ).all()
        for row in rows:
            json.loads(vault.decrypt(row.data, f"record:orders:{row.canonical_key}"))
        first, second = rows[0], rows[1]
        with pytest.raises(VaultError, match="tampered"):
            vault.decrypt(first.data, f"record:orders:{second.canonical_key}")
    engine.dispose()
