"""``partnersync demo``: the whole loop against a local sandbox platform, no account needed.

Pull products, stock and orders into a SQLite hub, change records on the platform (one made
invalid on purpose), pull again incrementally, then the other direction: a stock file pushed to
the platform (dry run, push, push again) and its orders exported to a file for the ERP.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import anyio
from rich.console import Console

from partnersync.auth.vault import Vault
from partnersync.cli.render import print_push, pull_progress, summary_table
from partnersync.config import init_project, load_project
from partnersync.errors import ConfigError
from partnersync.logs import configure_logging
from partnersync.service import Partnersync
from partnersync.sync.engine import RunSummary

ACCOUNT = "demo-shop"
FILES = "demo-erp"
ENTITIES = ("products", "inventory", "orders")


class DemoPlatform(Protocol):
    """What the demo needs of a sandbox platform."""

    name: str
    location: str

    @property
    def url(self) -> str:
        """Where the sandbox serves."""

    @property
    def secrets(self) -> dict[str, str]:
        """The credentials it accepts."""

    def change(self) -> str:
        """Change records as a merchant would (one made invalid); returns what changed."""

    def skus(self, count: int) -> list[str]:
        """SKUs the platform stocks."""


@dataclass
class _Shopify:
    sandbox: Any
    token: str
    name: str = "shopify"
    location: str = "Main warehouse"

    @property
    def url(self) -> str:
        return str(self.sandbox.url)

    @property
    def secrets(self) -> dict[str, str]:
        return {"access_token": self.token}

    def change(self) -> str:
        data = self.sandbox.data
        products = data.touch("products", 5)
        level_ids = sorted(data.tables["inventory_levels"])[:8]
        for level_id in level_ids:
            level = data.tables["inventory_levels"][level_id]
            quantities = {**level["quantities"], "available": level["quantities"]["available"] + 3}
            data.update("inventory_levels", level_id, {"quantities": quantities})
        orders = data.touch("orders", 3)
        broken = sorted(data.tables["variants"])[-1]
        data.update("variants", broken, {"price": "12,99"})  # a bad record on purpose
        return (
            f"{len(products)} products, {len(level_ids)} inventory levels, {len(orders)} orders, "
            "and one variant price set to '12,99' (not a decimal)"
        )

    def skus(self, count: int) -> list[str]:
        variants = self.sandbox.data.tables["variants"].values()
        return sorted(v["sku"] for v in variants if v.get("sku"))[:count]


@dataclass
class _Sandboxed:
    """A platform whose sandbox says its own credentials."""

    sandbox: Any

    @property
    def url(self) -> str:
        return str(self.sandbox.url)

    @property
    def secrets(self) -> dict[str, str]:
        return dict(self.sandbox.credentials())


@dataclass
class _WooCommerce(_Sandboxed):
    name: str = "woocommerce"
    location: str = "default"

    def change(self) -> str:
        data = self.sandbox.data
        products = sorted(data.products)[:5]
        for product_id in products:
            data.update_product(product_id, {"name": data.products[product_id]["name"] + " (new)"})
        skus = data.skus()[:8]
        for sku in skus:
            data.set_stock(sku, (data.stock_of(sku) or 0) + 3)
        orders = sorted(data.orders)[:3]
        for order_id in orders:
            data.update_order(order_id, {"status": "completed"})
        broken = sorted(data.products)[-1]
        data.update_product(broken, {"status": "limbo"})  # a bad record on purpose
        return (
            f"{len(products)} products, {len(skus)} stock levels, {len(orders)} orders, and one "
            "product given the unknown status 'limbo'"
        )

    def skus(self, count: int) -> list[str]:
        return list(self.sandbox.data.skus()[:count])


@dataclass
class _Taobao(_Sandboxed):
    name: str = "taobao"
    location: str = "default"

    def change(self) -> str:
        data = self.sandbox.data
        items = sorted(data.items)[:5]
        for num_iid in items:
            data.touch_item(num_iid, {"title": data.items[num_iid]["title"] + "（新）"})
        trades = sorted(data.trades)[:3]
        moment = data.now() - timedelta(minutes=5)  # the last window ends minutes behind now
        for tid in trades:
            data.trades[tid].update(status="TRADE_FINISHED", modified=gmt8_text(moment))
        broken = sorted(data.items)[-1]
        data.touch_item(broken, {"price": "十元"})  # a bad record on purpose
        return (
            f"{len(items)} items, {len(trades)} trades, and one item priced '十元' (not a number)"
        )

    def skus(self, count: int) -> list[str]:
        return list(self.sandbox.data.outer_ids()[:count])


def gmt8_text(moment: datetime) -> str:
    """A time as TOP writes it (GMT+8), for the sandbox's data."""
    from partnersync.auth.top import top_timestamp

    return top_timestamp(moment)


@contextmanager
def sandbox_platform(platform: str, request_log: Path) -> Iterator[DemoPlatform]:
    """A started sandbox of ``platform`` for the demo."""
    if platform == "shopify":
        from partnersync.sandbox.shopify import ShopifySandbox

        token = secrets.token_urlsafe(24)
        # Enterprise-plan pacing (2,000 points/s) keeps the demo quick; the connector reads the
        # bucket's real numbers from every response, whatever they are.
        with ShopifySandbox(token=token, restore_rate=2000.0, log_path=request_log) as shop:
            yield _Shopify(shop, token)
    elif platform == "woocommerce":
        from partnersync.sandbox.woocommerce import WooCommerceSandbox

        with WooCommerceSandbox(
            consumer_key="ck_" + secrets.token_hex(12),
            consumer_secret="cs_" + secrets.token_hex(16),
            log_path=request_log,
        ) as store:
            yield _WooCommerce(store)
    elif platform == "taobao":
        from partnersync.sandbox.taobao import TaobaoSandbox

        with TaobaoSandbox(
            app_key=str(secrets.randbelow(10**8)).zfill(8),
            app_secret=secrets.token_hex(16),
            session=secrets.token_hex(20),
            log_path=request_log,
        ) as gateway:
            yield _Taobao(gateway)
    else:
        raise ConfigError(f"the demo runs on shopify, woocommerce or taobao, not {platform!r}")


def run_pull(service: Partnersync, account: str, entity: str) -> RunSummary:
    """One pull with its progress line."""
    with pull_progress(entity) as on_page:
        return anyio.run(lambda: service.pull(account, entity, on_page=on_page))


def push_back(service: Partnersync, platform: DemoPlatform, drop: Path, console: Console) -> None:
    """The other direction: the brand's stock file to the shop, the shop's orders to a file."""
    from partnersync.sandbox.files import FileSandbox

    files = FileSandbox(directory=drop, skus=0, files=0).start()
    for stale in (drop / "inventory").glob("*"):
        stale.unlink()
    skus = platform.skus(10)
    files.write(
        "inventory/stock.csv",
        [
            {"sku": sku, "location": platform.location, "available": (n * 7) % 23}
            for n, sku in enumerate(skus)
        ],
    )
    service.add_account(name=FILES, platform="file", base_url=str(drop), secrets={})
    console.print(
        f"\n[bold]push[/]: a stock file for {len(skus)} SKUs at {platform.location!r} "
        f"dropped in {drop / 'inventory'}"
    )
    run_pull(service, FILES, "inventory")
    stock = service.push_options(ACCOUNT, "inventory", sources=[FILES], buffer=2)
    preview = anyio.run(lambda: service.push(ACCOUNT, "inventory", replace(stock, dry_run=True)))
    print_push(preview, dry_run=True)
    print_push(anyio.run(lambda: service.push(ACCOUNT, "inventory", stock)), dry_run=False)
    again = anyio.run(lambda: service.push(ACCOUNT, "inventory", stock))
    console.print(f"pushed again: {again.updated} writes (the shop already holds that stock)")
    orders = service.push_options(FILES, "orders", sources=[ACCOUNT])
    exported = anyio.run(lambda: service.push(FILES, "orders", orders))
    print_push(exported, dry_run=False)
    console.print(f"orders for the ERP: {sorted((drop / 'orders-out').glob('orders-*'))[-1]}")


def run_demo(directory: Path, console: Console, platform: str = "shopify") -> None:
    """Init a project in ``directory``, pull, change the sandbox, pull again, print the diff."""
    root = directory.resolve()
    init_project(root)
    project = load_project(root)
    for stale in ("hub.db", "hub.db-wal", "hub.db-shm"):
        (root / stale).unlink(missing_ok=True)  # each demo starts from an empty hub
    for export in (root / "drop" / "orders-out").glob("orders-*"):
        export.unlink()
    Vault.create_key_file(project.key_file)
    redactor = configure_logging(project.log_file)
    request_log = root / "logs" / "sandbox-requests.jsonl"
    request_log.unlink(missing_ok=True)
    with sandbox_platform(platform, request_log) as sandbox:
        redactor.register(*sandbox.secrets.values())
        console.print(f"[bold]sandbox {sandbox.name}[/] serving at {sandbox.url}")
        service = Partnersync(project, redactor=redactor)
        service.add_account(
            name=ACCOUNT,
            platform=sandbox.name,
            base_url=sandbox.url,
            secrets=sandbox.secrets,
            allow_loopback=True,
        )
        console.print(f"account [bold]{ACCOUNT}[/]: {service.account(ACCOUNT)['base_url']}")
        rows: list[tuple[str, RunSummary]] = []
        for entity in ENTITIES:
            rows.append(("first", run_pull(service, ACCOUNT, entity)))
        console.print(f"changed in the sandbox: {sandbox.change()}, to show the dead-letter queue")
        for entity in ENTITIES:
            rows.append(("incremental", run_pull(service, ACCOUNT, entity)))
        console.print(summary_table(rows, "partnersync demo: first pull, then incremental"))
        push_back(service, sandbox, root / "drop", console)
        service.close()

    letters = Partnersync(project, redactor=redactor).dead_letters()
    for letter in letters:
        console.print(
            f"dead letter {letter['id']}: {letter['entity']} {letter['external_id']} "
            f"field [bold]{letter['field']}[/]: {letter['reason']}"
        )
    invoked = sys.argv[0]
    program = os.path.relpath(invoked) if invoked.endswith("partnersync") else "partnersync"
    console.print(
        f"\nEverything is kept under {root}:\n"
        f"  project file  {root / 'partnersync.toml'}\n"
        f"  hub database  {project.database_url.removeprefix('sqlite:///')}\n"
        f"  log           {project.log_file}\n"
        f"  sandbox log   {request_log}\n"
        f"  file drop     {root / 'drop'} (stock in, orders out)\n"
        f"Try: {program} -p {directory} runs list · {program} -p {directory} dlq list"
    )
