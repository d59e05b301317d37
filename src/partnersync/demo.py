"""``partnersync demo``: the whole loop against a local sandbox Shopify, no account needed."""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path

import anyio
from rich.console import Console

from partnersync.auth.vault import Vault
from partnersync.cli.render import print_push, pull_progress, summary_table
from partnersync.config import init_project, load_project
from partnersync.logs import configure_logging
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from partnersync.sync.engine import RunSummary

ACCOUNT = "demo-shop"
FILES = "demo-erp"
ENTITIES = ("products", "inventory", "orders")


def run_pull(service: Partnersync, account: str, entity: str) -> RunSummary:
    """One pull with its progress line."""
    with pull_progress(entity) as on_page:
        return anyio.run(lambda: service.pull(account, entity, on_page=on_page))


def push_back(service: Partnersync, shop: ShopifySandbox, drop: Path, console: Console) -> None:
    """The other direction: the brand's stock file to the shop, the shop's orders to a file."""
    from partnersync.sandbox.files import FileSandbox

    files = FileSandbox(directory=drop, skus=0, files=0).start()
    for stale in (drop / "inventory").glob("*"):
        stale.unlink()
    main = "Main warehouse"
    skus = sorted(v["sku"] for v in shop.data.tables["variants"].values() if v.get("sku"))[:10]
    files.write(
        "inventory/stock.csv",
        [{"sku": sku, "location": main, "available": (n * 7) % 23} for n, sku in enumerate(skus)],
    )
    service.add_account(name=FILES, platform="file", base_url=str(drop), secrets={})
    console.print(
        f"\n[bold]push[/]: a stock file for {len(skus)} SKUs at {main!r} "
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


def run_demo(directory: Path, console: Console) -> None:
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
    token = secrets.token_urlsafe(24)
    redactor.register(token)
    # Enterprise-plan pacing (2,000 points/s) keeps the demo quick; the connector reads the bucket's
    # real numbers from every response, whatever they are.
    with ShopifySandbox(token=token, restore_rate=2000.0, log_path=request_log) as shop:
        console.print(f"[bold]sandbox Shopify[/] serving GraphQL Admin 2026-10 at {shop.url}")
        service = Partnersync(project, redactor=redactor)
        service.add_account(
            name=ACCOUNT,
            platform="shopify",
            base_url=shop.url,
            secrets={"access_token": token},
            allow_loopback=True,
        )
        console.print(f"account [bold]{ACCOUNT}[/]: {service.account(ACCOUNT)['base_url']}")
        rows: list[tuple[str, RunSummary]] = []
        for entity in ENTITIES:
            rows.append(("first", run_pull(service, ACCOUNT, entity)))

        data = shop.data
        changed_products = data.touch("products", 5)
        level_ids = sorted(data.tables["inventory_levels"])[:8]
        for level_id in level_ids:
            level = data.tables["inventory_levels"][level_id]
            quantities = {**level["quantities"], "available": level["quantities"]["available"] + 3}
            data.update("inventory_levels", level_id, {"quantities": quantities})
        changed_orders = data.touch("orders", 3)
        broken_variant = sorted(data.tables["variants"])[-1]
        data.update("variants", broken_variant, {"price": "12,99"})  # a bad record on purpose
        console.print(
            f"changed in the sandbox: {len(changed_products)} products, {len(level_ids)} "
            f"inventory levels, {len(changed_orders)} orders, and one variant price set to "
            "'12,99' (not a decimal) to show the dead-letter queue"
        )
        for entity in ENTITIES:
            rows.append(("incremental", run_pull(service, ACCOUNT, entity)))
        console.print(summary_table(rows, "partnersync demo: first pull, then incremental"))
        push_back(service, shop, root / "drop", console)
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
