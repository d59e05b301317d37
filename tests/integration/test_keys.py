"""Encryption keys: never a new key over data made with another; rotation re-encrypts all."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN
from tests.integration.test_cli import Cli, add_shop


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
