"""The ``partnersync`` command: a thin typer shell over :mod:`partnersync.service`.

Errors print one line and exit non-zero, without a traceback; read commands take ``--json``.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import signal
import sys
import time
from datetime import datetime
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlsplit

import anyio
import typer
from rich.table import Table

from partnersync import operations
from partnersync.auth.vault import KEYS_ENV
from partnersync.cli.render import (
    capability_rows,
    capability_table,
    console,
    doctor_table,
    emit_json,
    errors,
    mask_personal,
    plan_dict,
    plan_table,
    print_push,
    print_status,
    pull_progress,
    schedule_table,
    summary_dict,
    summary_table,
)
from partnersync.config import init_project, load_project
from partnersync.config.times import parse_since
from partnersync.errors import AlreadyRunningError, PartnersyncError
from partnersync.logs import configure_logging
from partnersync.service import KeyAdmin, Partnersync, installed_connectors
from partnersync.sync.engine import PullProgress, RunSummary
from partnersync.sync.push import MassChangeError, PushSummary

app = typer.Typer(
    name="partnersync",
    help="Keep a brand's products, inventory and orders in step with partner platforms.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)
accounts_app = typer.Typer(help="Wire platform accounts.", no_args_is_help=True)
sync_app = typer.Typer(help="Move data between platforms and the hub.", no_args_is_help=True)
runs_app = typer.Typer(help="Sync run history.", no_args_is_help=True)
records_app = typer.Typer(help="Canonical records in the hub.", no_args_is_help=True)
dlq_app = typer.Typer(help="Records that could not be mapped.", no_args_is_help=True)
sandbox_app = typer.Typer(help="Loopback fakes of partner platforms.", no_args_is_help=True)
jobs_app = typer.Typer(help="Jobs of the project file.", no_args_is_help=True)
cursors_app = typer.Typer(help="Where incremental pulls start.", no_args_is_help=True)
config_app = typer.Typer(help="The project's settings.", no_args_is_help=True)
mapping_app = typer.Typer(help="How platform records map.", no_args_is_help=True)
keys_app = typer.Typer(help="The encryption keys of the hub's secrets.", no_args_is_help=True)
schedule_app = typer.Typer(
    help="When jobs run: the daemon and its schedules.", no_args_is_help=True
)
db_app = typer.Typer(help="The hub database.", no_args_is_help=True)
admin_app = typer.Typer(help="Who may sign in to the connect page.", no_args_is_help=True)
for sub, name in [
    (accounts_app, "accounts"),
    (sync_app, "sync"),
    (runs_app, "runs"),
    (records_app, "records"),
    (dlq_app, "dlq"),
    (sandbox_app, "sandbox"),
    (jobs_app, "jobs"),
    (cursors_app, "cursors"),
    (config_app, "config"),
    (mapping_app, "mapping"),
    (keys_app, "keys"),
    (schedule_app, "schedule"),
    (db_app, "db"),
    (admin_app, "admin"),
]:
    app.add_typer(sub, name=name)


SECRET_FIELDS = "; ".join(
    f"{spec.platform}: {', '.join(spec.secret_fields) or 'none'}" for spec in installed_connectors()
)
"""The secret fields each installed platform takes (for ``accounts add --help``)."""

ProjectOption = Annotated[
    Path | None,
    typer.Option("--project", "-p", help="Project directory (default: $PARTNERSYNC_PROJECT or .)"),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class _State:
    project_dir: Path | None = None
    log_level: str | None = None
    committed: str | None = None
    """What the pull under way has committed so far (said if it is interrupted)."""


state = _State()


EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL: try again later
EXIT_CODES = f"""Exit codes: {EXIT_OK} success; {EXIT_FAILED} a run failed; {EXIT_USAGE} usage or
configuration error; {EXIT_INTERNAL} internal error (a bug: details in the log file);
{EXIT_PARTIAL} partial (dead letters, or records a push could not place);
{EXIT_ALREADY_RUNNING} already running (the same job, or the same account × entity × direction,
runs elsewhere: nothing was done); {EXIT_INTERRUPTED} interrupted by Ctrl-C or SIGTERM (committed
pages are kept; run again to resume)."""


def _version(value: bool) -> None:
    if value:
        console.print(f"partnersync {metadata.version('partnersync')}")
        raise typer.Exit()


@app.callback(epilog=EXIT_CODES)
def _root(
    project: ProjectOption = None,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help="DEBUG, INFO, WARNING or ERROR (default $PARTNERSYNC_LOG_LEVEL, INFO).",
        ),
    ] = None,
) -> None:
    state.project_dir = project
    state.log_level = log_level


def exit_for(statuses: list[str]) -> None:
    """Leave with the exit code the runs' statuses call for (see EXIT_CODES)."""
    if "failed" in statuses:
        raise typer.Exit(EXIT_FAILED)
    if "interrupted" in statuses:
        raise typer.Exit(EXIT_INTERRUPTED)
    if "partial" in statuses:
        raise typer.Exit(EXIT_PARTIAL)


def open_service(*, to_stderr: bool = False) -> Partnersync:
    """Load the project, start logging with redaction, open the hub. SIGTERM asks running
    work to stop after the page it is committing."""
    project = load_project(state.project_dir)
    redactor = configure_logging(project.log_file, state.log_level, to_stderr=to_stderr)
    service = Partnersync(project, redactor=redactor)
    signal.signal(signal.SIGTERM, lambda signum, frame: service.stop.request("SIGTERM"))
    settle_heap()
    return service


def settle_heap() -> None:
    """Hide what is alive now — modules, classes, the opened service, all kept until the
    process ends — from the cyclic garbage collector, which otherwise walks all of it again in
    every full collection: a sixth of a large pull's CPU (``bench/pull_throughput.py``).
    Objects made later are collected as usual. (No collection first: it would cost every
    command ~40 ms to free the few cycles start-up leaves, once.)"""
    gc.freeze()


# -- init -----------------------------------------------------------------------------------
@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Project directory.")] = Path(".")) -> None:
    """Create partnersync.toml, an encryption key and the hub database."""
    path = init_project(directory)
    project = load_project(directory)
    if not project.key_file.exists() and not os.environ.get(KEYS_ENV):
        KeyAdmin(project).init()  # refuses a new key over data made with another one
    service = Partnersync(project)
    service.close()
    console.print(
        f"project file: {path}\nhub database: {project.database_url}\nkey file: {project.key_file}"
    )


# -- keys -----------------------------------------------------------------------------------
@keys_app.command("init")
def keys_init() -> None:
    """Make the project's first encryption key (refused if the hub holds data under another)."""
    key_id = KeyAdmin(load_project(state.project_dir)).init()
    console.print(f"key {key_id} made; keep a copy of the key file somewhere safe")


@keys_app.command("check")
def keys_check(as_json: JsonOption = False) -> None:
    """Which keys the hub's data is under, and whether the key ring holds and reads them all."""
    report = KeyAdmin(load_project(state.project_dir)).check()
    if as_json:
        emit_json(report)
    else:
        used = ", ".join(f"{k}: {n}" for k, n in sorted(report["in_use"].items())) or "nothing"
        console.print(f"key ring {', '.join(report['ring'])} (primary {report['primary']})")
        console.print(f"values by key: {used}")
        if report["missing"] or report["unreadable"]:
            errors.print(
                f"[red]missing keys:[/] {', '.join(report['missing']) or 'none'}; "
                f"{report['unreadable']} values cannot be read"
            )
    if report["missing"] or report["unreadable"]:
        raise typer.Exit(EXIT_FAILED)


@keys_app.command("rotate")
def keys_rotate() -> None:
    """A new primary key; every secret and encrypted record re-encrypted under it."""
    key_id, count = KeyAdmin(load_project(state.project_dir)).rotate()
    console.print(
        f"primary key now {key_id}; {count} values re-encrypted. Once 'keys check' shows no "
        "value under an old key, 'keys retire ID' removes it."
    )


@keys_app.command("retire")
def keys_retire(key_id: str) -> None:
    """Remove an old key from the key file (refused while any value is under it)."""
    KeyAdmin(load_project(state.project_dir)).retire(key_id)
    console.print(f"key {key_id} retired")


# -- accounts -------------------------------------------------------------------------------
@accounts_app.command("add")
def accounts_add(
    name: str,
    platform: Annotated[str, typer.Option(help="Platform, e.g. shopify.")],
    url: Annotated[str, typer.Option(help="Base URL, e.g. https://my-shop.myshopify.com.")],
    api_version: Annotated[str | None, typer.Option(help="API version to pin.")] = None,
    secret_env: Annotated[
        list[str] | None,
        typer.Option(
            help="FIELD=ENVVAR: read a secret from an environment variable. Secret fields: "
            + SECRET_FIELDS
        ),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE connector option (e.g. pace=false).")
    ] = None,
    allow_loopback: Annotated[
        bool, typer.Option(help="Allow a plain-http loopback URL (sandboxes and tests only).")
    ] = False,
) -> None:
    """Add (or replace) an account; secrets are prompted for or read from the environment."""
    service = open_service()
    spec = service.registry.get(platform)
    from_env = dict(item.split("=", 1) for item in secret_env or [])
    unknown = sorted(set(from_env) - set(spec.secret_fields) - set(spec.optional_secret_fields))
    if unknown:
        accepted = ", ".join(spec.secret_fields) or "none"
        raise PartnersyncError(
            f"{platform} accounts take the secret field(s) {accepted}, not {', '.join(unknown)}"
        )
    secrets: dict[str, str] = {}
    optional = [f for f in spec.optional_secret_fields if f in from_env]
    for field in (*spec.secret_fields, *optional):
        if field in from_env:
            value = os.environ.get(from_env[field])
            if not value:
                raise PartnersyncError(f"environment variable {from_env[field]} is empty or unset")
            secrets[field] = value
        else:
            secrets[field] = typer.prompt(f"{field} for {name}", hide_input=True)
    options = _options(option)
    service.add_account(
        name=name,
        platform=platform,
        base_url=url,
        secrets=secrets,
        api_version=api_version,
        options=options,
        allow_loopback=allow_loopback,
    )
    console.print(f"account [bold]{name}[/] added ({platform}); secrets stored encrypted")


@accounts_app.command("connect")
def accounts_connect(
    name: str,
    platform: Annotated[str, typer.Option(help="Platform with OAuth, e.g. shopify.")],
    url: Annotated[str, typer.Option(help="The shop, e.g. https://my-shop.myshopify.com.")],
    client_id: Annotated[
        str | None, typer.Option(help="OAuth platforms: your app's client id (API key).")
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="Key-handover platforms (WooCommerce): the https address where `partnersync "
            "serve` runs; the store posts the keys there."
        ),
    ] = None,
    client_secret_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the app's client secret (else asked)."),
    ] = None,
    scopes: Annotated[
        str, typer.Option(help="Access scopes to request, comma-separated.")
    ] = "read_products,write_products,read_inventory,write_inventory,read_orders",
    port: Annotated[
        int, typer.Option(help="Loopback port for the redirect (0: any; register it).")
    ] = 0,
    paste: Annotated[
        bool,
        typer.Option(
            "--paste",
            help="Headless machine: open the URL anywhere, then paste the address the browser "
            "lands on.",
        ),
    ] = False,
    redirect_uri: Annotated[
        str | None,
        typer.Option(help="With --paste: the app's registered redirect URL."),
    ] = None,
    option: Annotated[
        list[str] | None, typer.Option(help="KEY=VALUE connector option (e.g. pace=false).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the approval.")] = 300.0,
    allow_loopback: Annotated[
        bool, typer.Option(help="Allow a plain-http loopback URL (sandboxes and tests only).")
    ] = False,
    oauth_url: Annotated[
        str | None,
        typer.Option(
            help="Where the platform's OAuth endpoints are (Taobao's default: "
            "https://oauth.taobao.com)."
        ),
    ] = None,
) -> None:
    """Connect an account: OAuth (Shopify: authorization code, the callback's state and HMAC
    checked; Taobao/Tmall: its session key; tokens stored encrypted and refreshed ahead of
    expiry) or a key handover (WooCommerce: the store owner approves and the store posts the
    keys to `partnersync serve` at --public-url). Without --client-id, the app of
    [apps.PLATFORM] in partnersync.toml is used."""
    from partnersync.auth.loopback import CallbackListener

    service = open_service()
    spec = service.registry.get(platform)
    if spec.key_handover_path is not None:
        _key_handover(service, name, platform, url, public_url, option, timeout, allow_loopback)
        return
    secret: str | None = None
    if not client_id and platform in service.project.config.apps:
        client_id, secret, app_scopes, app_oauth_url = service.oauth_app(platform)
        scopes = app_scopes or scopes
        oauth_url = oauth_url or app_oauth_url
    if not client_id:
        raise PartnersyncError(f"{platform} uses OAuth: pass --client-id or add [apps.{platform}]")
    if secret is None:
        secret = os.environ.get(client_secret_env) if client_secret_env else None
        if client_secret_env and not secret:
            raise PartnersyncError(f"environment variable {client_secret_env} is empty or unset")
        secret = secret or typer.prompt("client secret", hide_input=True)
    options = _options(option)

    def connect(redirect: str, receive: Any) -> None:
        anyio.run(
            lambda: service.connect_account(
                name=name,
                platform=platform,
                base_url=url,
                client_id=client_id,
                client_secret=secret,
                scopes=scopes,
                redirect_uri=redirect,
                receive=receive,
                options=options,
                allow_loopback=allow_loopback,
                oauth_url=oauth_url,
            )
        )

    if paste:
        if not redirect_uri:
            raise PartnersyncError("--paste needs --redirect-uri (the app's registered URL)")

        async def pasted(authorize_url: str) -> dict[str, str]:
            typer.echo(f"Open this address in a browser and approve:\n{authorize_url}")
            landed = typer.prompt("Paste the full address the browser landed on")
            return dict(parse_qsl(urlsplit(landed.strip()).query))

        connect(redirect_uri, pasted)
    else:
        with CallbackListener(port) as listener:

            async def listened(authorize_url: str) -> dict[str, str] | None:
                typer.echo(f"Open this address in a browser and approve:\n{authorize_url}")
                typer.echo(f"(waiting up to {timeout:.0f} s for {listener.redirect_uri})")
                return await anyio.to_thread.run_sync(listener.wait, timeout)

            connect(listener.redirect_uri, listened)
    console.print(f"account [bold]{name}[/] connected ({platform}); tokens stored encrypted")


def _key_handover(
    service: Partnersync,
    name: str,
    platform: str,
    url: str,
    public_url: str | None,
    option: list[str] | None,
    timeout: float,
    allow_loopback: bool,
) -> None:
    if not public_url:
        raise PartnersyncError(
            f"{platform} posts the keys to partnersync serve: pass --public-url (its https address)"
        )
    options = _options(option)
    authorize_url, state = service.start_key_handover(
        name=name,
        platform=platform,
        base_url=url,
        public_url=public_url,
        options=options,
        allow_loopback=allow_loopback,
    )
    typer.echo(f"Open this address in a browser and approve:\n{authorize_url}")
    typer.echo(f"(waiting up to {timeout:.0f} s for the store to post the keys to {public_url})")
    deadline = time.monotonic() + timeout
    while not service.store.pending_connects.completed(state):
        if time.monotonic() > deadline:
            raise PartnersyncError("no keys arrived: is partnersync serve reachable there?")
        time.sleep(0.2)
    console.print(f"account [bold]{name}[/] connected ({platform}); keys stored encrypted")


def _options(items: list[str] | None) -> dict[str, Any]:
    """``--option KEY=VALUE`` items as connector options."""
    return {key: _option_value(raw) for key, _, raw in (i.partition("=") for i in items or [])}


def _option_value(raw: str) -> Any:
    lowered = raw.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(raw)
    except ValueError:
        try:
            return float(raw)
        except ValueError:
            return raw


@accounts_app.command("list")
def accounts_list(as_json: JsonOption = False) -> None:
    """List accounts (never their secrets)."""
    accounts = open_service().accounts()
    if as_json:
        emit_json(accounts)
        return
    table = Table("name", "platform", "base URL", "API version")
    for account in accounts:
        table.add_row(
            account["name"], account["platform"], account["base_url"], account["api_version"] or ""
        )
    console.print(table)


@accounts_app.command("show")
def accounts_show(name: str, as_json: JsonOption = False) -> None:
    """An account's settings and the names of its secrets (never their values)."""
    details = open_service().account_details(name)
    if as_json:
        emit_json(details)
        return
    table = Table("field", "value", show_header=False)
    for key, value in details.items():
        table.add_row(key, json.dumps(value) if isinstance(value, dict | list) else str(value))
    console.print(table)


@accounts_app.command("remove")
def accounts_remove(name: str) -> None:
    """Remove an account (its hub records and run history stay)."""
    if not open_service().remove_account(name):
        raise PartnersyncError(f"no account named {name!r}")
    console.print(f"account {name} removed")


@accounts_app.command("test")
def accounts_test(name: str) -> None:
    """Make one authenticated call to the platform."""
    service = open_service()
    description = anyio.run(service.test_account, name)
    console.print(f"[green]ok[/]: {name} → {description}")


# -- sync -----------------------------------------------------------------------------------
def run_pull(
    service: Partnersync,
    account: str,
    entity: str,
    *,
    full: bool = False,
    since: datetime | None = None,
    show_progress: bool = True,
) -> RunSummary:
    """Pull with a live progress line; returns the summary."""
    with pull_progress(entity, show=show_progress) as show_page:

        def on_page(progress: PullProgress) -> None:
            state.committed = (
                f"{account}/{entity}: {progress.pages} page(s), {progress.fetched} record(s) "
                "committed"
            )
            show_page(progress)

        summary = anyio.run(
            lambda: service.pull(account, entity, full=full, since=since, on_page=on_page)
        )
    state.committed = None
    if summary.resumed_from and show_progress:
        previous, how = summary.resumed_from
        where = (
            "the page it stopped at"
            if summary.resumed_walk
            else summary.cursor_before or "the start"
        )
        errors.print(
            f"resumed after run {previous} ({how}) from {where}: its committed pages were kept",
            highlight=False,
        )
    return summary


@sync_app.command("pull")
def sync_pull(
    account: str,
    entity: Annotated[str, typer.Argument(help="products, inventory, orders, or all")],
    full: Annotated[
        bool, typer.Option("--full", help="Re-read everything, ignoring the cursor.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(
            help="Start here instead of the cursor: 2026-11-01, 2026-11-01T08:00+08:00 (UTC "
            "unless an offset is given), 12h, 3d, today or yesterday."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Pull changes since the last checkpoint from a platform into the hub."""
    if since is not None and full:
        raise PartnersyncError("--since and --full cannot go together: --full re-reads everything")
    start = parse_since(since) if since is not None else None
    service = open_service()
    entities = service.entities(account) if entity == "all" else [entity]
    results = [
        (
            entity_name,
            run_pull(
                service, account, entity_name, full=full, since=start, show_progress=not as_json
            ),
        )
        for entity_name in entities
    ]
    if as_json:
        emit_json([summary_dict(s) for _, s in results])
    else:
        console.print(summary_table([(f"run {s.run_id}", s) for _, s in results], "pull"))
        for _, s in results:
            if s.error:
                errors.print(f"[red]run {s.run_id} failed:[/] {s.error}")
    exit_for([s.status for _, s in results])


@sync_app.command("push")
def sync_push(
    account: str,
    entity: Annotated[str, typer.Argument(help="inventory, products, fulfillments or orders")],
    source: Annotated[
        list[str] | None, typer.Option("--from", help="Source account(s); default: from the job.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the writes; make none.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Let a mass change through.")] = False,
    buffer: Annotated[
        int | None, typer.Option(help="Units held back per SKU and location.")
    ] = None,
    allocation: Annotated[
        float | None, typer.Option(help="Share of stock offered to this channel (0-1].")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Push the hub's state of ENTITY to ACCOUNT (exactly once; --dry-run shows the diff)."""
    service = open_service()
    options = service.push_options(
        account,
        entity,
        sources=source or (),
        dry_run=dry_run,
        force=force,
        buffer=buffer,
        allocation=Decimal(str(allocation)) if allocation is not None else None,
    )
    try:
        summary = anyio.run(lambda: service.push(account, entity, options))
    except MassChangeError as exc:
        if as_json:
            emit_json({"refused": str(exc), "plan": plan_dict(exc.plan)})
        else:
            console.print(plan_table(exc.plan))
        raise
    if as_json:
        emit_json(
            {
                "run_id": summary.run_id,
                "status": summary.status,
                "created": summary.created,
                "updated": summary.updated,
                "dead_lettered": summary.dead_lettered,
                "requests": summary.requests,
                "error": summary.error,
                "dry_run": dry_run,
                "plan": plan_dict(summary.plan),
            }
        )
    else:
        print_push(summary, dry_run)
    exit_for([summary.status])


@sync_app.command("run")
def sync_run(
    job: str,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Pull, then plan pushes; write none.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Let a mass change through.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Run a job from the project file: pull its sources, refresh its targets, push."""
    service = open_service()
    results = anyio.run(lambda: service.run_job(job, dry_run=dry_run, force=force))
    pulls = [r for r in results if isinstance(r, RunSummary)]
    pushes = [r for r in results if isinstance(r, PushSummary)]
    if as_json:
        emit_json(
            {
                "pulls": [summary_dict(s) for s in pulls],
                "pushes": [
                    {
                        "run_id": p.run_id,
                        "target": p.target,
                        "status": p.status,
                        "created": p.created,
                        "updated": p.updated,
                        "dead_lettered": p.dead_lettered,
                        "plan": plan_dict(p.plan),
                    }
                    for p in pushes
                ],
            }
        )
    else:
        if pulls:
            console.print(
                summary_table([(f"run {s.run_id}", s) for s in pulls], f"job {job}: pulls")
            )
        for push in pushes:
            print_push(push, dry_run)
    exit_for([r.status for r in results])


# -- runs, records, dead letters ------------------------------------------------------------
@runs_app.command("list")
def runs_list(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    limit: Annotated[int, typer.Option(help="How many.")] = 20,
    as_json: JsonOption = False,
) -> None:
    """Recent runs, newest first."""
    runs = open_service().runs(account=account, limit=limit)
    if as_json:
        emit_json(runs)
        return
    table = Table(
        "id",
        "account",
        "entity",
        "mode",
        "status",
        "started",
        "fetched",
        "created",
        "updated",
        "unchanged",
        "dead",
        "requests",
    )
    for r in runs:
        table.add_row(
            str(r["id"]),
            r["account"],
            r["entity"],
            r["mode"],
            r["status"],
            r["started_at"][:19],
            str(r["fetched"]),
            str(r["created"]),
            str(r["updated"]),
            str(r["unchanged"]),
            str(r["dead_lettered"]),
            str(r["requests"]),
        )
    console.print(table)


@runs_app.command("show")
def runs_show(run_id: int, as_json: JsonOption = False) -> None:
    """One run in full."""
    run, conflicts = open_service().run(run_id)
    if as_json:
        emit_json({**run, "conflicts": conflicts})
        return
    table = Table("field", "value", show_header=False)
    for key, value in run.items():
        table.add_row(key, "" if value is None else str(value))
    console.print(table)
    for c in conflicts:
        console.print(
            f"conflict {c['canonical_key']} {c['field']}: hub {c['hub_value']} vs platform "
            f"{c['platform_value']} (was {c['baseline_value']}) → {c['winner']} ({c['policy']})"
        )


@records_app.command("list")
def records_list(
    account: str,
    entity: str,
    search: Annotated[
        str | None, typer.Option(help="Only records whose id or summary match.")
    ] = None,
    limit: Annotated[int, typer.Option(help="At most this many.")] = 50,
    as_json: JsonOption = False,
) -> None:
    """An account's records: external id and a summary (find ids for records show)."""
    found = open_service().list_records(account, entity, search=search, limit=limit)
    if as_json:
        emit_json(found)
        return
    table = Table("external id", "summary")
    for row in found:
        table.add_row(row["external_id"], row["summary"])
    console.print(table)


RevealOption = Annotated[
    bool,
    typer.Option(
        "--reveal", help="Show customers' emails, phones, names and addresses (masked otherwise)."
    ),
]


@records_app.command("show")
def records_show(
    account: str,
    entity: str,
    external_id: str,
    as_json: JsonOption = False,
    reveal: RevealOption = False,
) -> None:
    """A canonical record by its platform id (customers' personal data masked unless
    --reveal)."""
    record = open_service().record(account, entity, external_id)
    if not reveal:
        record = mask_personal(record)
    if as_json:
        emit_json(record)
    else:
        console.print_json(json.dumps(record, default=str))


@dlq_app.command("list")
def dlq_list(
    account: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    entity: Annotated[str | None, typer.Option(help="Only this entity.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Open dead letters: record, field and reason."""
    letters = open_service().dead_letters(account=account, entity=entity)
    if as_json:
        emit_json(letters)
        return
    table = Table("id", "run", "dir", "account", "entity", "record", "source", "field", "reason")
    for d in letters:
        table.add_row(
            str(d["id"]),
            str(d["run_id"]),
            d["direction"],
            d["account"],
            d["entity"],
            d["external_id"] or "?",
            d["source_ref"] or "",
            d["field"],
            d["reason"],
        )
    console.print(table)


@dlq_app.command("replay")
def dlq_replay(
    ids: Annotated[list[int] | None, typer.Argument(help="Dead-letter ids (see dlq list).")] = None,
    replay_all: Annotated[bool, typer.Option("--all", help="Every open dead letter.")] = False,
) -> None:
    """Retry dead letters: re-map pulled records (after a mapping fix), re-send failed writes."""
    service = open_service()
    chosen = list(ids or [])
    if replay_all:
        chosen = [d["id"] for d in service.dead_letters(limit=10_000)]
        if not chosen:
            console.print("no open dead letters: nothing to replay")
            return
    if not chosen:
        raise PartnersyncError("name dead-letter ids, or pass --all")
    for letter_id, outcome in anyio.run(service.replay, chosen):
        console.print(f"{letter_id:>6} {outcome}" if letter_id else outcome)


@dlq_app.command("dismiss")
def dlq_dismiss(
    ids: Annotated[list[int], typer.Argument(help="Dead-letter ids (see dlq list).")],
) -> None:
    """Close dead letters without retrying them (a record you fixed elsewhere, or do not want)."""
    service = open_service()
    for letter_id in ids:
        service.dismiss_dead_letter(letter_id)
        console.print(f"{letter_id:>6} dismissed")


# -- cursors, config and mapping -----------------------------------------------------------
@cursors_app.command("show")
def cursors_show(as_json: JsonOption = False) -> None:
    """Where each account's next incremental pull starts."""
    rows = open_service().cursors()
    if as_json:
        emit_json(rows)
        return
    table = Table("account", "entity", "cursor", "moved at", "run")
    for row in rows:
        table.add_row(
            row["account"], row["entity"], row["value"], row["updated_at"], str(row["run_id"])
        )
    console.print(table)


@cursors_app.command("reset")
def cursors_reset(account: str, entity: str) -> None:
    """Forget a cursor: the next pull of ACCOUNT ENTITY reads everything."""
    open_service().reset_cursor(account, entity)
    console.print(f"{account}/{entity}: cursor reset; the next pull reads everything")


@config_app.command("show")
def config_show(as_json: JsonOption = False) -> None:
    """The project's settings as loaded (no secrets: those live encrypted in the hub)."""
    settings = open_service().config()
    if as_json:
        emit_json(settings)
    else:
        console.print_json(json.dumps(settings, default=str))


@mapping_app.command("preview")
def mapping_preview(
    account: str,
    entity: str,
    external_id: Annotated[
        str | None, typer.Argument(help="A record id; default: the first.")
    ] = None,
    as_json: JsonOption = False,
    reveal: RevealOption = False,
) -> None:
    """A real record from the platform before and after mapping (with this account's overrides)
    and the source fields of each canonical field (personal data masked unless --reveal)."""
    preview = anyio.run(lambda: open_service().preview_mapping(account, entity, external_id))
    if not reveal:
        preview = mask_personal(preview)
    if as_json:
        emit_json(preview)
        return
    console.print("[bold]platform record[/]")
    console.print_json(json.dumps(preview["raw"], default=str))
    if "error" in preview:
        errors.print(
            f"[red]does not map:[/] field {preview['error']['field']}: {preview['error']['reason']}"
        )
        return
    console.print("[bold]canonical record[/]")
    console.print_json(json.dumps(preview["canonical"], default=str))
    table = Table("canonical field", "from")
    for target, sources in preview["sources"].items():
        table.add_row(target, ", ".join(sources))
    console.print(table)


# -- jobs -----------------------------------------------------------------------------------
@jobs_app.command("list")
def jobs_list(as_json: JsonOption = False) -> None:
    """The jobs of the project file: what each moves, from where, to where."""
    jobs = open_service().jobs()
    if as_json:
        emit_json(jobs)
        return
    table = Table("job", "entity", "sources", "targets", "buffer", "allocation")
    for name, job in jobs.items():
        table.add_row(
            name,
            job["entity"],
            ", ".join(job["sources"]),
            ", ".join(job["targets"]),
            str(job["buffer"]),
            str(job["allocation"]),
        )
    console.print(table)


# -- connectors -----------------------------------------------------------------------------
@app.command()
def connectors(as_json: JsonOption = False) -> None:
    """Installed connectors: what each can pull, incrementally or not, and how it writes."""
    rows = capability_rows(installed_connectors())
    if as_json:
        emit_json(rows)
    else:
        console.print(capability_table(rows))


# -- sandbox and demo -----------------------------------------------------------------------
@sandbox_app.command("serve")
def sandbox_serve(
    platform: Annotated[str, typer.Argument(help="Which platform to fake.")] = "shopify",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 = any free port).")] = 0,
    token: Annotated[str, typer.Option(help="The access token it accepts.")] = "sandbox-token",
    products: Annotated[int, typer.Option(help="Products to generate.")] = 60,
    orders: Annotated[int, typer.Option(help="Orders to generate.")] = 40,
    restore_rate: Annotated[float, typer.Option(help="Cost points restored per second.")] = 100.0,
    log: Annotated[Path | None, typer.Option(help="JSONL request log file.")] = None,
) -> None:
    """Serve a sandbox in the foreground until Ctrl-C."""
    from partnersync.connectors.registry import ConnectorRegistry

    spec = ConnectorRegistry.from_entry_points().get(platform)
    if spec.sandbox is None:
        raise PartnersyncError(f"{platform} has no sandbox")
    sandbox = spec.sandbox(
        token=token,
        port=port,
        products=products,
        orders=orders,
        restore_rate=restore_rate,
        log_path=log,
    )
    settle_heap()  # the generated shop lives as long as the process
    errors.print(f"{platform} sandbox on 127.0.0.1 (token {token!r}); Ctrl-C stops it")
    with contextlib.suppress(KeyboardInterrupt):
        _announce_and_serve(sandbox)


def _announce_and_serve(sandbox: Any) -> None:
    try:
        sandbox.start()
    except OSError as exc:
        raise PartnersyncError(
            f"cannot serve on 127.0.0.1:{sandbox.port}: {exc.strerror or exc} (pick another "
            "--port, or 0 for any free one)"
        ) from None
    console.print(f"serving {sandbox.url}")
    try:
        while True:
            anyio.run(anyio.sleep, 3600)
    finally:
        sandbox.stop()


@app.command()
def demo(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to keep the demo project.")
    ] = Path("partnersync-demo"),
    platform: Annotated[
        str, typer.Option(help="The sandbox platform: shopify, woocommerce or taobao.")
    ] = "shopify",
) -> None:
    """Pull from a local sandbox platform into a SQLite hub, change it, pull again, push back."""
    from partnersync.demo import run_demo

    run_demo(directory, console, platform)


# -- unattended: the daemon, workers, status, doctor, database ---------------------------------

MetricsPort = Annotated[
    int | None, typer.Option("--metrics-port", help="Serve Prometheus /metrics on this port.")
]
MetricsHost = Annotated[
    str, typer.Option("--metrics-host", help="Address for /metrics (0.0.0.0 in containers).")
]


def _metrics(service: Partnersync, port: int | None, host: str) -> None:
    if port is not None:
        from partnersync.metrics import serve_metrics

        serve_metrics(service.store, port, host)
        errors.print(f"metrics on http://{host}:{port}/metrics", highlight=False)


@schedule_app.command("run")
def schedule_run(
    executor: Annotated[
        str,
        typer.Option(
            help="in-process: run due jobs here (SQLite or PostgreSQL); workers: queue them "
            "for `partnersync worker` processes (PostgreSQL hub, partnersync[postgres])."
        ),
    ] = "in-process",
    wait_first: Annotated[
        bool,
        typer.Option(
            "--wait-first", help="Wait for each job's first fire instead of running it at once."
        ),
    ] = False,
    shutdown_grace: Annotated[
        float,
        typer.Option(
            "--shutdown-grace",
            help="Seconds SIGTERM waits for running jobs before cancelling them.",
        ),
    ] = 30.0,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """The daemon: run each job of the project file on its schedule until SIGTERM/SIGINT
    (running jobs then commit their page and stop; exit 0)."""
    service = open_service(to_stderr=True)
    _metrics(service, metrics_port, metrics_host)
    anyio.run(
        lambda: operations.run_daemon(
            service,
            executor=executor,
            run_at_start=not wait_first,
            shutdown_grace=shutdown_grace,
        )
    )


@schedule_app.command("list")
def schedule_list(as_json: JsonOption = False) -> None:
    """Each job's schedule, lane, next run, last run and how it ended."""
    service = open_service()
    operations.validate_schedules(service)
    rows = operations.scheduled_jobs(service)
    if as_json:
        emit_json(rows)
        return
    console.print(schedule_table(rows))


@app.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Jobs run at once by this worker.")] = 2,
    heartbeat: Annotated[float, typer.Option(help="Seconds between heartbeats.")] = 10.0,
    stall_timeout: Annotated[
        float,
        typer.Option(
            "--stall-timeout",
            help="Seconds without a heartbeat after which a worker's jobs are retried elsewhere.",
        ),
    ] = 30.0,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
) -> None:
    """Run queued jobs (PostgreSQL hub; `schedule run --executor workers` queues them) until
    SIGTERM/SIGINT."""
    service = open_service(to_stderr=True)
    _metrics(service, metrics_port, metrics_host)
    anyio.run(
        lambda: operations.run_worker(
            service, concurrency=concurrency, heartbeat=heartbeat, stall_timeout=stall_timeout
        )
    )


@app.command()
def status(as_json: JsonOption = False) -> None:
    """Accounts, jobs, last runs, lag, open dead letters and what runs now, at a glance."""
    service = open_service()
    report = operations.status(service)
    if as_json:
        emit_json(report)
        return
    print_status(report)


@app.command()
def doctor(as_json: JsonOption = False) -> None:
    """Check this deployment (database, key, every account's credentials, file drops,
    schedules, job queue) and say what to fix; exit 1 if anything needs fixing."""
    service = open_service()
    checks = anyio.run(lambda: operations.doctor(service))
    if as_json:
        emit_json(checks)
    else:
        console.print(doctor_table(checks))
    if not all(c["ok"] for c in checks):
        raise typer.Exit(EXIT_FAILED)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    public_url: Annotated[
        str | None,
        typer.Option(
            help="The https address brands and platforms reach this at (default: [web] "
            "public_url, else the listening address)."
        ),
    ] = None,
    allow_loopback: Annotated[
        bool,
        typer.Option(help="Let the connect page wire accounts on this machine (sandboxes)."),
    ] = False,
    executor: Annotated[
        str,
        typer.Option(
            help="Where the pulls webhooks ask for run: local (in this process) or workers "
            "(queued for `partnersync worker`; PostgreSQL hub)."
        ),
    ] = "local",
) -> None:
    """Run the connect page for brands (sign in, connect accounts through OAuth, a key
    handover or pasted keys, see their health) and receive the platforms' webhooks
    (POST /webhooks/PLATFORM/ACCOUNT: signatures checked, each delivery applied once, a pull of
    what changed within seconds)."""
    from partnersync.web import serve as run_app

    service = open_service(to_stderr=True)
    if not service.store.web.admins():
        errors.print(
            "no one can sign in to the connect page yet: partnersync admin add NAME",
            highlight=False,
        )
    errors.print(f"listening on http://{host}:{port}", highlight=False)
    run_app(
        service,
        host,
        port,
        public_url=public_url,
        allow_loopback=allow_loopback,
        executor=executor,
    )


@admin_app.command("add")
def admin_add(
    username: str,
    password_env: Annotated[
        str | None,
        typer.Option(help="Environment variable holding the password (else asked twice)."),
    ] = None,
) -> None:
    """Let USERNAME sign in to the connect page (or set a new password: their sessions end)."""
    service = open_service()
    if password_env:
        password = os.environ.get(password_env, "")
        if not password:
            raise PartnersyncError(f"environment variable {password_env} is empty or unset")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < 12:
        raise PartnersyncError("a connect-page password has at least 12 characters")
    service.store.web.set_admin(username, password)
    console.print(f"[bold]{username}[/] can sign in to the connect page")


@admin_app.command("list")
def admin_list() -> None:
    """Who may sign in to the connect page."""
    service = open_service()
    for name in service.store.web.admins():
        typer.echo(name)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the hub (and, on PostgreSQL, apply the job queue's schema)."""
    service = open_service()
    for line in operations.upgrade_database(service):
        console.print(line)


def _fail(message: str, kind: str, code: int) -> None:
    """One line on stderr; with ``--json``, also a JSON error object on stdout."""
    errors.print(message, highlight=False)
    if "--json" in sys.argv[1:]:
        typer.echo(
            json.dumps({"error": message.split("] ", 1)[-1], "kind": kind, "exit_code": code})
        )
    sys.exit(code)


ROOT_OPTIONS = ("-p", "--project", "--log-level")
"""Options of the whole program that people also type after the command."""


def _project_first(argv: list[str]) -> list[str]:
    """``-p/--project DIR`` and ``--log-level`` accepted anywhere on the line (typer wants them
    before the command)."""
    rest: list[str] = []
    found: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg in ROOT_OPTIONS and index + 1 < len(argv):
            found += [arg, argv[index + 1]]
            index += 2
            continue
        if arg.split("=", 1)[0] in ROOT_OPTIONS[1:] and "=" in arg:
            found.append(arg)
        else:
            rest.append(arg)
        index += 1
    return found + rest


def main() -> None:
    """Console entry point: one clear line and a documented exit code on errors."""
    interrupted = []

    def on_interrupt(signum: int, frame: Any) -> None:
        interrupted.append(signum)  # typer reports Ctrl-C as exit 1: remember it was one
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_interrupt)
    try:
        app(args=_project_first(sys.argv[1:]), prog_name="partnersync")
    except SystemExit:
        if interrupted:
            committed = f" ({state.committed})" if state.committed else ""
            _fail(
                f"[yellow]interrupted:[/] pages already committed are kept{committed}; run the "
                "same command again to resume from the last checkpoint",
                "Interrupted",
                EXIT_INTERRUPTED,
            )
        raise
    except AlreadyRunningError as exc:
        _fail(f"[yellow]already running:[/] {exc}", "AlreadyRunning", EXIT_ALREADY_RUNNING)
    except PartnersyncError as exc:
        _fail(f"[red]error:[/] {exc}", type(exc).__name__, EXIT_USAGE)
    except Exception as exc:
        logging.getLogger("partnersync").exception("internal error")
        _fail(
            f"[red]internal error:[/] {type(exc).__name__}: {exc} (details in the log file)",
            type(exc).__name__,
            EXIT_INTERNAL,
        )
