"""``partnersync demo``: the whole loop against a local sandbox Shopify, no account needed."""

from __future__ import annotations

import secrets
from pathlib import Path

from rich.console import Console

from partnersync.auth.vault import Vault
from partnersync.config import init_project, load_project
from partnersync.logs import configure_logging
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from partnersync.sync.engine import RunSummary

ACCOUNT = "demo-shop"
ENTITIES = ("products", "inventory", "orders")


def run_demo(directory: Path, console: Console) -> None:
    """Init a project in ``directory``, pull, change the sandbox, pull again, print the diff."""
    from partnersync.cli import run_pull, summary_table

    root = directory.resolve()
    init_project(root)
    project = load_project(root)
    for stale in ("hub.db", "hub.db-wal", "hub.db-shm"):
        (root / stale).unlink(missing_ok=True)  # each demo starts from an empty hub
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
        service.close()

    console.print(summary_table(rows, "partnersync demo: first pull, then incremental"))
    letters = Partnersync(project, redactor=redactor).store.list_dead_letters()
    for letter in letters:
        console.print(
            f"dead letter {letter['id']}: {letter['entity']} {letter['external_id']} "
            f"field [bold]{letter['field']}[/]: {letter['reason']}"
        )
    console.print(
        f"\nEverything is kept under {root}:\n"
        f"  project file  {root / 'partnersync.toml'}\n"
        f"  hub database  {project.database_url.removeprefix('sqlite:///')}\n"
        f"  log           {project.log_file}\n"
        f"  sandbox log   {request_log}\n"
        f"Try: partnersync -p {directory} runs list · partnersync -p {directory} dlq list"
    )
