"""The sandbox enforces its cost bucket; the connector's pacing keeps under it at near full rate."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from partnersync.auth.vault import Vault
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN, make_service, wire_shop

pytestmark = pytest.mark.anyio

BUCKET = 200.0
RESTORE = 800.0  # points per second: a scaled-up plan keeps this test to a few seconds
PAGE = 10
"""Small pages (about 60 points each by Shopify's logarithmic connection costs): many requests,
each a fraction of the bucket."""


@pytest.fixture
def tight_shop() -> Iterator[ShopifySandbox]:
    with ShopifySandbox(
        token=SHOP_TOKEN, bucket_size=BUCKET, restore_rate=RESTORE, products=100
    ) as sandbox:
        yield sandbox


async def pull_inventory(tmp_path: Path, vault: Vault, shop: ShopifySandbox, **options: Any) -> Any:
    service = make_service(tmp_path, vault)
    wire_shop(service, shop, page_size=PAGE, **options)
    summary = await service.pull("shop", "inventory")
    service.close()
    return summary


async def test_without_pacing_the_sandbox_answers_throttled(
    tmp_path: Path, vault: Vault, tight_shop: ShopifySandbox
) -> None:
    summary = await pull_inventory(tmp_path, vault, tight_shop, pace=False, max_attempts=50)
    throttled = [e for e in tight_shop.log.entries if e.get("throttled")]
    assert throttled, "an unpaced client must hit the bucket"
    # Throttled answers are retried after the advertised refill time, so the run still completes.
    assert summary.status == "succeeded"
    assert summary.progress.created == tight_shop.data.counts()["inventory_levels"]


async def test_with_pacing_no_throttled_answers_and_most_of_the_restore_rate_used(
    tmp_path: Path, vault: Vault, tight_shop: ShopifySandbox
) -> None:
    # A fixed nested size keeps the pages as they were (cost-aware sizing would make fewer).
    summary = await pull_inventory(tmp_path, vault, tight_shop, levels_first=10)
    entries = [e for e in tight_shop.log.entries if e.get("op") == "InventoryItems"]
    assert not [e for e in tight_shop.log.entries if e.get("throttled")]
    assert summary.status == "succeeded"
    assert len(entries) >= 10
    # Steady state: after the first request drains the initial bucket, points spent per second
    # over the rest of the run, against what the bucket restores per second.
    elapsed = entries[-1]["t"] - entries[0]["t"]
    spent = sum(e["actual"] for e in entries[1:])
    utilisation = spent / (RESTORE * elapsed + BUCKET - entries[0]["available"])
    print(f"pacing used {utilisation:.0%} of the restore rate over {elapsed:.2f}s")
    assert utilisation >= 0.8, f"used {utilisation:.0%} of the restore rate"


RACE_RESTORE = 150.0
"""Points a second the shop restores during the two-process race."""


def _pull_in_a_process(project: Path, keys: str, entity: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "partnersync", "-p", str(project), "sync", "pull", "shop", entity],
        env={**os.environ, "PARTNERSYNC_KEYS": keys},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _project(
    root: Path, keys: str, shop: ShopifySandbox, database_url: str, **options: Any
) -> Path:
    service = make_service(root, Vault.parse(keys), database_url)
    wire_shop(service, shop, page_size=25, **options)
    service.close()
    (root / "partnersync.toml").write_text(f'[hub]\ndatabase = "{database_url}"\n')
    return root


def _throttled_with(
    projects: list[Path], keys: str, shop: ShopifySandbox, *, must_finish: bool = True
) -> int:
    shop.log.clear()
    # A slow restore keeps both pulls running long enough to overlap however slowly the two
    # processes start (a busy machine once started the second after the first was done).
    shop.bucket.set_limits(capacity=300.0, restore_rate=RACE_RESTORE)
    time.sleep(300.0 / RACE_RESTORE + 0.1)  # the bucket refills to full before the race
    processes = [
        _pull_in_a_process(project, keys, entity)
        for project, entity in zip(projects, ("inventory", "orders"), strict=True)
    ]
    for process in processes:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0 or not must_finish, err
    return sum(1 for entry in shop.log.entries if entry.get("throttled"))


def test_two_processes_on_one_hub_share_the_shop_bucket_and_are_never_throttled(
    tmp_path: Path, database_url: str
) -> None:
    """Two OS processes pulling from one shop at once draw from one budget in the hub, so
    together they stay within the shop's bucket; two processes on separate hubs (each sure the
    whole bucket is its own) are throttled on the same race."""
    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    with ShopifySandbox(
        token=SHOP_TOKEN, bucket_size=300.0, restore_rate=600.0, products=60, orders=75
    ) as shop:
        shared = _project(tmp_path / "one", keys, shop, database_url)
        assert _throttled_with([shared, shared], keys, shop) == 0
        apart = [
            # Two attempts: a process throttled over and over gives up instead of waiting it out.
            _project(
                tmp_path / name,
                keys,
                shop,
                f"sqlite:///{tmp_path / name / 'hub.db'}",
                max_attempts=2,
            )
            for name in ("a", "b")
        ]
        assert _throttled_with(apart, keys, shop, must_finish=False) > 0
