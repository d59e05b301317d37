"""Rendering for the CLI and the demo: rich tables, progress lines, JSON. No business logic and
no service calls: what is shown is handed in."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from partnersync.connectors.base import ConnectorSpec
from partnersync.sync.engine import PullProgress, RunSummary
from partnersync.sync.push import PushPlan, PushSummary

# Outside a terminal (cron, CI, a pipe) rich would cut tables at 80 columns: use a wide page.
_WIDTH = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 200
console = Console(width=_WIDTH)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else _WIDTH)


def emit_json(data: Any) -> None:
    """Print JSON for scripts."""
    typer.echo(json.dumps(data, indent=2, default=str))


@contextmanager
def pull_progress(entity: str, *, show: bool = True) -> Iterator[Callable[[PullProgress], None]]:
    """A live progress line for one pull; yields the callback to give the pull."""
    with Progress(
        SpinnerColumn(),
        TextColumn("[bold]{task.description}"),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
        transient=False,
    ) as progress:
        task = progress.add_task(entity, total=None, detail="starting")

        def on_page(p: PullProgress) -> None:
            progress.update(
                task,
                detail=f"page {p.pages}: {p.fetched} read, {p.created} new, {p.updated} changed, "
                f"{p.dead_lettered} dead, {p.requests} req",
            )

        # What the run waits for (a rate limit, a retry) shows on the line while it waits.
        waits = _WaitLine(lambda text: progress.update(task, detail=text))
        http_log = logging.getLogger("partnersync.http")
        http_log.addHandler(waits)
        try:
            yield on_page
        finally:
            http_log.removeHandler(waits)
        progress.update(task, total=1, completed=1)


class _WaitLine(logging.Handler):
    """Puts ``partnersync.http``'s INFO lines (waits and retries) on a progress line."""

    def __init__(self, show: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self._show = show

    def emit(self, record: logging.LogRecord) -> None:
        """Show the message."""
        self._show(record.getMessage())


def summary_dict(summary: RunSummary) -> dict[str, Any]:
    """A run summary for JSON output."""
    p = summary.progress
    return {
        "run_id": summary.run_id,
        "account": summary.account,
        "entity": summary.entity,
        "status": summary.status,
        "since": summary.since.isoformat() if summary.since else None,
        "cursor_after": summary.cursor_after,
        "pages": p.pages,
        "requests": p.requests,
        "fetched": p.fetched,
        "created": p.created,
        "updated": p.updated,
        "unchanged": p.unchanged,
        "dead_lettered": p.dead_lettered,
        "error": summary.error,
    }


def summary_table(rows: list[tuple[str, RunSummary]], title: str) -> Table:
    """created / updated / unchanged / dead-lettered / requests per run."""
    table = Table(title=title)
    for column in (
        "pass",
        "entity",
        "status",
        "fetched",
        "created",
        "updated",
        "unchanged",
        "dead-lettered",
        "requests",
    ):
        numeric = column not in ("pass", "entity", "status")
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    colour = {"succeeded": "green", "partial": "yellow", "failed": "red"}
    for label, s in rows:
        p = s.progress
        table.add_row(
            label,
            s.entity,
            f"[{colour.get(s.status, 'white')}]{s.status}[/]",
            str(p.fetched),
            str(p.created),
            str(p.updated),
            str(p.unchanged),
            str(p.dead_lettered),
            str(p.requests),
        )
    return table


def plan_table(plan: PushPlan) -> Table:
    """The exact writes a push would make: record, field, platform value → new value."""
    table = Table(title=f"{plan.entity} → {plan.target}: {len(plan.writes)} writes planned")
    for column in ("record", "field", "platform value", "new value"):
        table.add_column(column, overflow="fold")
    for write in plan.writes:
        for number, change in enumerate(write.changes):
            table.add_row(
                write.label if number == 0 else "",
                change.field,
                "—" if change.current is None else str(change.current),
                str(change.new),
            )
    return table


def plan_dict(plan: PushPlan) -> dict[str, Any]:
    """A plan for JSON output."""
    return {
        "target": plan.target,
        "entity": plan.entity,
        "writes": [
            {
                "record": w.label,
                "operation": w.operation,
                "source": w.source_ref,
                "changes": [
                    {"field": c.field, "current": c.current, "new": c.new} for c in w.changes
                ],
            }
            for w in plan.writes
        ],
        "unchanged": plan.unchanged,
        "problems": [
            {"record": p.key, "reason": p.reason, "source": p.source_ref} for p in plan.problems
        ],
        "conflicts": [vars(c) for c in plan.conflicts],
    }


def print_push(summary: PushSummary, dry_run: bool) -> None:
    """Plan (for a dry run) or outcome of a push, with problems and conflicts."""
    plan = summary.plan
    if dry_run:
        console.print(plan_table(plan))
        console.print(f"dry run: nothing was written; {plan.unchanged} already equal")
    else:
        colour = {"succeeded": "green", "partial": "yellow", "failed": "red"}.get(
            summary.status, "white"
        )
        console.print(
            f"push run {summary.run_id} {summary.target}/{summary.entity}: "
            f"[{colour}]{summary.status}[/] "
            f"— {summary.created} created, {summary.updated} updated, {plan.unchanged} unchanged, "
            f"{len(plan.problems)} not placed, {summary.dead_lettered} dead-lettered, "
            f"{len(plan.conflicts)} conflicts, {summary.requests} requests"
        )
    for problem in plan.problems:
        console.print(
            f"[yellow]not placed[/] {problem.key} ({problem.source_ref or '?'}): {problem.reason}"
        )
    for c in plan.conflicts:
        console.print(
            f"[magenta]conflict[/] {c.key} {c.field}: hub {c.hub!r} vs platform {c.platform!r} "
            f"(was {c.baseline!r}) → {c.winner} wins by policy {c.policy!r}"
        )
    if summary.error:
        errors.print(f"[red]push failed:[/] {summary.error}", highlight=False)


def capability_rows(specs: Sequence[ConnectorSpec]) -> list[dict[str, Any]]:
    """One row per connector × entity: what can be pulled and how it is written."""
    rows = []
    for spec in specs:
        for entity, capability in spec.connector.capabilities.entities.items():
            writer = capability.writer
            rows.append(
                {
                    "platform": spec.platform,
                    "entity": entity,
                    "pull": capability.pull,
                    "incremental": capability.pull and capability.incremental,
                    "page_limit": capability.page_limit,
                    "window_seconds": capability.window.total_seconds()
                    if capability.window
                    else None,
                    "push": sorted(writer.verbs) if writer else [],
                    "batch_limit": writer.batch_limit if writer else None,
                    "idempotency_keys": bool(writer and writer.idempotency_keys),
                    "compare_and_set": bool(writer and writer.compare_and_set),
                }
            )
    return rows


def capability_table(rows: Sequence[dict[str, Any]]) -> Table:
    """The capability matrix as a table."""
    table = Table(title="installed connectors")
    for column in ("platform", "entity", "pull", "incremental", "push", "batch", "keys", "CAS"):
        table.add_column(column, no_wrap=True)

    def mark(flag: bool) -> str:
        return "yes" if flag else "-"

    for row in rows:
        table.add_row(
            row["platform"],
            row["entity"],
            mark(row["pull"]),
            mark(row["incremental"]),
            ", ".join(row["push"]) or "-",
            str(row["batch_limit"] or "-"),
            mark(row["idempotency_keys"]),
            mark(row["compare_and_set"]),
        )
    return table


def schedule_table(rows: Sequence[dict[str, Any]]) -> Table:
    """``schedule list``: one row per job."""
    table = Table(title="jobs")
    for column in ("job", "entity", "schedule", "lane", "next run", "last run", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["job"],
            row["entity"],
            row["schedule"],
            row["lane"],
            _short_time(row["next_run"]),
            _short_time(row["last_run"]),
            row["last_status"] or "never ran",
        )
    return table


def _short_time(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def _lag(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def print_status(report: dict[str, Any]) -> None:
    """``status``: accounts, streams with lag and dead letters, jobs, what runs now."""
    accounts = ", ".join(f"{a['name']} ({a['platform']})" for a in report["accounts"])
    console.print(f"accounts: {accounts or 'none'}")
    streams = Table(title="streams")
    for column in ("account", "entity", "dir", "last run", "status", "ended", "lag", "dead"):
        streams.add_column(column)
    for row in report["streams"]:
        streams.add_row(
            row["account"],
            row["entity"],
            row["direction"],
            str(row["last_run"]),
            row["status"],
            _short_time(row["finished_at"]),
            _lag(row["lag_seconds"]),
            str(row["open_dead_letters"] or ""),
        )
    console.print(streams)
    if report["jobs"]:
        console.print(schedule_table(report["jobs"]))
    if report["running"]:
        for lease in report["running"]:
            console.print(
                f"running: {lease['scope']} by {lease['holder']} since "
                f"{_short_time(lease['since'])}"
            )
    else:
        console.print("running: nothing")
    console.print(f"open dead letters: {report['open_dead_letters']}")


def doctor_table(checks: Sequence[dict[str, Any]]) -> Table:
    """``doctor``: each check, ok or what to fix."""
    table = Table(title="doctor")
    for column in ("check", "", "detail", "fix"):
        table.add_column(column)
    for check in checks:
        table.add_row(
            check["check"],
            "[green]ok[/]" if check["ok"] else "[red]FIX[/]",
            check["detail"],
            check["fix"],
        )
    return table


PERSONAL_KEYS = frozenset(
    {"email", "phone", "firstname", "lastname", "address1", "address2", "zip", "company"}
)
"""Fields that identify a person (compared lowercased, without ``_``)."""
MASK = "•••"


def mask_personal(value: Any, parent: str = "") -> Any:
    """``value`` with personal data masked: emails, phones, names and street addresses of
    customers (a shown record never puts a customer's details on a screen or in a terminal
    log; ``--reveal`` shows them)."""
    if isinstance(value, dict):
        return {
            key: MASK
            if isinstance(item, str) and _is_personal(str(key), parent)
            else mask_personal(item, str(key))
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [mask_personal(item, parent) for item in value]
    return value


def _is_personal(key: str, parent: str) -> bool:
    plain = key.replace("_", "").lower()
    if plain in PERSONAL_KEYS:
        return True
    return plain == "name" and "address" in parent.replace("_", "").lower()
