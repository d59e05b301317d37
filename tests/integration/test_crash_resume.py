"""A pull SIGKILLed mid-run (a real subprocess) resumes without losing or duplicating a record."""

from __future__ import annotations

import base64
import os
import secrets
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from partnersync.auth.vault import Vault
from partnersync.config import init_project
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import make_service, wire_shop

PAGE_SIZE = 8  # 40 orders → 5 pages
ITEMS_PER_PAGE = 30  # 275 inventory items → 10 pages (30 is what the cost allows)


def run_cli(
    project: Path, keys: str, *args: str, failpoints: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PARTNERSYNC_KEYS": keys, "PARTNERSYNC_FAILPOINTS": failpoints}
    return subprocess.run(
        [sys.executable, "-m", "partnersync", "-p", str(project), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def shop_project(tmp_path: Path, shop: ShopifySandbox, **options: object) -> tuple[Path, str, str]:
    """A project whose account ``shop`` is the sandbox (with connector ``options``), run by
    CLI processes: (project, key ring, hub URL)."""
    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    project = tmp_path / "project"
    init_project(project)
    url = f"sqlite:///{project / 'hub.db'}"
    service = make_service(project, Vault.parse(keys), database_url=url)
    wire_shop(service, shop, **options)
    service.close()
    return project, keys, url


@pytest.mark.parametrize(
    "failpoint",
    [
        f"{point}:{page}"
        for point in ("after_http", "before_page_commit", "after_page_commit")
        for page in (1, 3, 5)
    ],
)
def test_killed_pull_resumes_with_every_record_exactly_once(
    tmp_path: Path, shop: ShopifySandbox, failpoint: str
) -> None:
    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    project = tmp_path / "project"
    init_project(project)
    service = make_service(
        project, Vault.parse(keys), database_url=f"sqlite:///{project / 'hub.db'}"
    )
    wire_shop(service, shop, page_size=PAGE_SIZE)
    service.close()
    total = len(shop.data.tables["orders"])

    killed = run_cli(project, keys, "sync", "pull", "shop", "orders", failpoints=failpoint)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    shop.log.clear()

    resumed = run_cli(project, keys, "sync", "pull", "shop", "orders", "--json")
    assert resumed.returncode == 0, resumed.stderr

    hub = make_service(project, Vault.parse(keys), database_url=f"sqlite:///{project / 'hub.db'}")
    with hub.store.engine.connect() as connection:
        rows = connection.execute(
            text("select canonical_key from records where entity = 'orders'")
        ).all()
        links = connection.execute(
            text("select count(*) from links where entity = 'orders'")
        ).scalar()
    assert len(rows) == total
    assert len({r[0] for r in rows}) == total
    assert links == total
    newest = max(o["updatedAt"] for o in shop.data.tables["orders"].values())
    assert hub.store.cursors.get("shop", "orders") == datetime.fromisoformat(newest).isoformat()
    # The resumed run re-read at most the one page that was in flight, not the whole history.
    committed_pages = int(failpoint.split(":")[1]) - (
        0 if failpoint.startswith("after_page_commit") else 1
    )
    remaining_pages = -(-total // PAGE_SIZE) - committed_pages
    page_requests = [e for e in shop.log.entries if e.get("op") == "Orders"]
    assert len(page_requests) <= remaining_pages + 1
    hub.close()


@pytest.mark.parametrize("failpoint", ["before_page_commit:2", "after_page_commit:3"])
def test_a_killed_woocommerce_pull_resumes_with_every_record_exactly_once(
    tmp_path: Path, failpoint: str
) -> None:
    from partnersync.sandbox.woocommerce import WooCommerceSandbox

    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    project = tmp_path / "project"
    init_project(project)
    with WooCommerceSandbox(products=5, orders=40) as store:
        service = make_service(
            project, Vault.parse(keys), database_url=f"sqlite:///{project / 'hub.db'}"
        )
        service.add_account(
            name="woo",
            platform="woocommerce",
            base_url=store.url,
            secrets=store.credentials(),
            options={"page_size": PAGE_SIZE},
            allow_loopback=True,
        )
        service.close()

        killed = run_cli(project, keys, "sync", "pull", "woo", "orders", failpoints=failpoint)
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        resumed = run_cli(project, keys, "sync", "pull", "woo", "orders", "--json")
        assert resumed.returncode == 0, resumed.stderr

        hub = make_service(
            project, Vault.parse(keys), database_url=f"sqlite:///{project / 'hub.db'}"
        )
        ids = sorted(r.external_id for r in hub.store.records.of("woo", "orders"))
        assert ids == sorted(str(i) for i in store.data.orders)
        hub.close()


def test_an_inventory_walk_killed_again_and_again_goes_on_from_its_last_page(
    tmp_path: Path, shop: ShopifySandbox
) -> None:
    """Inventory cannot be sorted by update time, so its cursor moves only when a walk ends;
    each killed run leaves its page token, and the next one goes on from there (issue 7: 14
    killed pulls in a row used to re-read all 2,577 levels)."""
    project, keys, url = shop_project(tmp_path, shop, page_size=ITEMS_PER_PAGE)
    items = len(shop.data.tables["inventory_items"])
    levels = len(shop.data.tables["inventory_levels"])
    pages = -(-items // ITEMS_PER_PAGE)
    assert pages >= 6, "the sandbox shop has enough items for several kills"

    def item_pages() -> int:
        return len([e for e in shop.log.entries if e.get("op") == "InventoryItems"])

    killed_runs = 0
    committed = 0
    while committed + 2 < pages:  # each run commits two pages, then dies
        shop.log.clear()
        killed = run_cli(
            project, keys, "sync", "pull", "shop", "inventory", failpoints="after_page_commit:2"
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert item_pages() == 2  # a resumed run asks for no page it already has
        killed_runs += 1
        committed += 2
    shop.log.clear()
    finished = run_cli(project, keys, "sync", "pull", "shop", "inventory")
    assert finished.returncode == 0, finished.stderr
    assert "from the page it stopped at" in finished.stderr
    assert item_pages() == pages - committed  # m − k pages, not m

    hub = make_service(project, Vault.parse(keys), database_url=url)
    with hub.store.engine.connect() as connection:
        keys_seen = connection.execute(
            text("select canonical_key from records where entity = 'inventory'")
        ).all()
        first_walk = connection.execute(
            text("select walk_started_at from runs where entity = 'inventory' order by id limit 1")
        ).scalar()
    assert len(keys_seen) == levels
    assert len({row[0] for row in keys_seen}) == levels
    # The cursor is where the first, killed run began: changes since then are read next time.
    assert hub.store.cursors.get("shop", "inventory") == first_walk
    assert killed_runs >= 2
    hub.close()


def test_a_walk_interrupted_by_a_crash_mid_page_resumes_from_the_last_committed_page(
    tmp_path: Path, shop: ShopifySandbox
) -> None:
    """SIGKILL after page k of m is fetched but before it commits: the rerun asks for at most
    m − k + 1 pages."""
    project, keys, url = shop_project(tmp_path, shop, page_size=ITEMS_PER_PAGE)
    pages = -(-len(shop.data.tables["inventory_items"]) // ITEMS_PER_PAGE)
    killed_at = 4
    killed = run_cli(
        project,
        keys,
        "sync",
        "pull",
        "shop",
        "inventory",
        failpoints=f"before_page_commit:{killed_at}",
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    shop.log.clear()
    resumed = run_cli(project, keys, "sync", "pull", "shop", "inventory")
    assert resumed.returncode == 0, resumed.stderr
    requested = len([e for e in shop.log.entries if e.get("op") == "InventoryItems"])
    assert requested <= pages - killed_at + 1
    hub = make_service(project, Vault.parse(keys), database_url=url)
    assert hub.store.records.count("inventory") == len(shop.data.tables["inventory_levels"])
    hub.close()
