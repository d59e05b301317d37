"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN
from tests.integration.unattended import World


@pytest.fixture
def world_factory(tmp_path: Path) -> Iterator[Callable[..., World]]:
    made: list[World] = []
    shops: list[ShopifySandbox] = []
    drops: list[FileSandbox] = []

    def make(
        schedule: str = '{ every = "1s" }', latency: float = 0.0, database_url: str | None = None
    ) -> World:
        shop = ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, bucket_size=1000.0)
        shop.faults.latency = latency
        shops.append(shop.start())
        drop = FileSandbox(directory=tmp_path / "erp", skus=0, files=0)
        drops.append(drop.start())
        world = World(tmp_path / "project", shop, drop, schedule, database_url)
        made.append(world)
        return world

    yield make
    for world in made:
        world.close()
    for sandbox in [*shops, *drops]:
        sandbox.stop()
