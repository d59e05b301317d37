"""Push from the command line: jobs, --dry-run, and order exports that survive being killed."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import orjson
import pytest

from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN
from tests.integration.test_cli import Cli, add_shop

MAIN = "Main warehouse"

JOBS = """
[jobs.stock]
entity = "inventory"
sources = ["erp"]
targets = ["shop"]
buffer = 2

[jobs.orders-out]
entity = "orders"
sources = ["shop"]
targets = ["erp"]
"""


@pytest.fixture
def drop(tmp_path: Path) -> FileSandbox:
    return FileSandbox(directory=tmp_path / "drop", skus=0, files=0).start()


@pytest.fixture
def wired(tmp_path: Path, shop: ShopifySandbox, drop: FileSandbox) -> Cli:
    cli = Cli(tmp_path / "project")
    cli("init", str(cli.project))
    with (cli.project / "partnersync.toml").open("a") as handle:
        handle.write(JOBS)
    add_shop(cli, shop)
    cli("accounts", "add", "erp", "--platform", "file", "--url", drop.url)
    return cli


def write_count(shop: ShopifySandbox) -> int:
    return sum(1 for e in shop.log.entries if e.get("write"))


def test_dry_run_prints_the_diff_and_writes_nothing(
    wired: Cli, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    sku = sorted(v["sku"] for v in shop.data.tables["variants"].values())[0]
    drop.write("inventory/stock.csv", [{"sku": sku, "location": MAIN, "available": 42}])
    wired("sync", "pull", "shop", "inventory")
    wired("sync", "pull", "erp", "inventory")
    before = write_count(shop)

    out = wired("sync", "push", "shop", "inventory", "--dry-run").stdout

    assert write_count(shop) == before
    assert sku in out
    assert "available" in out
    assert "40" in out
    assert "platform value" in out
    assert "nothing was written" in out
    plan = json.loads(wired("sync", "push", "shop", "inventory", "--dry-run", "--json").stdout)
    [write] = plan["plan"]["writes"]
    assert write["changes"][0]["new"] == 40
    assert write["source"] == "inventory/stock.csv:2"


def test_a_job_pulls_then_pushes_and_a_rerun_writes_nothing(
    wired: Cli, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    chosen = sorted(v["sku"] for v in shop.data.tables["variants"].values())[:5]
    drop.write(
        "inventory/stock.csv",
        [{"sku": s, "location": MAIN, "available": 10 + i} for i, s in enumerate(chosen)],
    )
    result = json.loads(wired("sync", "run", "stock", "--json").stdout)
    assert [p["entity"] for p in result["pulls"]] == ["inventory", "inventory"]
    assert result["pushes"][0]["status"] == "succeeded"
    writes = write_count(shop)
    again = json.loads(wired("sync", "run", "stock", "--json").stdout)
    assert again["pushes"][0]["updated"] == 0
    assert write_count(shop) == writes


def exported_orders(drop: FileSandbox) -> list[str]:
    assert drop.directory is not None
    ids: list[str] = []
    for path in sorted((drop.directory / "orders-out").glob("orders-*.jsonl")):
        ids += [orjson.loads(line)["external_id"] for line in path.read_bytes().splitlines()]
    return ids


def test_orders_are_exported_exactly_once_even_when_the_export_is_killed(
    wired: Cli, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    wired("sync", "pull", "shop", "orders")
    killed = wired(
        "sync",
        "push",
        "erp",
        "orders",
        expect=-signal.SIGKILL,
        env={"PARTNERSYNC_FAILPOINTS": "after_export_write:1"},
    )
    assert "Traceback" not in killed.stderr
    assert drop.directory is not None
    assert len(list((drop.directory / "orders-out").glob("orders-*"))) == 1  # written, not recorded

    rerun = json.loads(wired("sync", "push", "erp", "orders", "--json").stdout)
    assert rerun["status"] == "succeeded"
    total = len(shop.data.tables["orders"])
    assert sorted(exported_orders(drop)) == sorted(shop.data.tables["orders"])
    assert len(exported_orders(drop)) == total

    status = {o["id"]: o["displayFulfillmentStatus"] for o in shop.data.tables["orders"].values()}
    touched = shop.data.touch("orders", 3)  # now FULFILLED: a new status goes out as an update
    changed = sorted(i for i in touched if status[i] != "FULFILLED")
    wired("sync", "run", "orders-out")
    assert len(exported_orders(drop)) == total + len(changed)
    rows = [
        orjson.loads(line)
        for p in (drop.directory / "orders-out").glob("*.jsonl")
        for line in p.read_bytes().splitlines()
    ]
    assert {r["channel"] for r in rows} == {"shop"}
    assert sorted(r["external_id"] for r in rows if r["event"] == "updated") == changed
    wired("sync", "run", "orders-out")
    assert len(exported_orders(drop)) == total + len(changed)  # nothing new: nothing written
    assert all(r["external_id"].startswith("gid://shopify/Order/") for r in rows)
    assert not list((drop.directory / "orders-out").glob(".partial-*"))
    assert SHOP_TOKEN not in "".join(wired.outputs)


def test_stock_flags_that_would_oversell_are_refused_before_anything_is_written(
    wired: Cli, shop: ShopifySandbox, drop: FileSandbox
) -> None:
    sku = sorted(v["sku"] for v in shop.data.tables["variants"].values())[0]
    drop.write("inventory/stock.csv", [{"sku": sku, "location": MAIN, "available": 10}])
    wired("sync", "pull", "erp", "inventory")
    before = write_count(shop)

    too_much = wired("sync", "push", "shop", "inventory", "--allocation", "3", expect=2)
    below_zero = wired("sync", "push", "shop", "inventory", "--buffer", "-7", expect=2)

    assert "allocation must be above 0 and at most 1" in too_much.stderr
    assert "buffer must be 0 or more" in below_zero.stderr
    assert write_count(shop) == before
