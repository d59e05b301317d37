"""The sandbox enforces its cost bucket; the connector's pacing keeps under it at near full rate."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from partnersync.auth.vault import Vault
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN, make_service, wire_shop

pytestmark = pytest.mark.anyio

BUCKET = 1000.0
RESTORE = 4000.0  # points per second: a scaled-up plan keeps this test to a few seconds


@pytest.fixture
def tight_shop() -> Iterator[ShopifySandbox]:
    with ShopifySandbox(
        token=SHOP_TOKEN, bucket_size=BUCKET, restore_rate=RESTORE, products=150
    ) as sandbox:
        yield sandbox


async def pull_inventory(tmp_path: Path, vault: Vault, shop: ShopifySandbox, **options: Any) -> Any:
    service = make_service(tmp_path, vault)
    wire_shop(service, shop, **options)
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
    summary = await pull_inventory(tmp_path, vault, tight_shop)
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
