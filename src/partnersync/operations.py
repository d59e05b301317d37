"""Running unattended and keeping an eye on it: the daemon, workers, ``status``, ``doctor`` and
``db upgrade`` — on top of the :class:`~partnersync.service.Partnersync` facade (the CLI and
embedding code call these; no business rule lives in the CLI)."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text

from partnersync.errors import ConfigError, PartnersyncError, VaultError
from partnersync.service import Partnersync
from partnersync.sync.offload import blocking
from partnersync.sync.store.runs import cursor_lag
from partnersync.sync.store.unit import utcnow_iso

log = logging.getLogger("partnersync.schedule")

EXECUTORS = ("in-process", "workers")


def scheduled_jobs(service: Partnersync) -> list[dict[str, Any]]:
    """Every job of the project file: schedule, lane, next fire, last run and its status."""
    # APScheduler is imported only where schedules are read (it costs every command start-up).
    from partnersync.scheduling.daemon import next_fire

    latest = service.store.job_runs.latest_by_job()
    rows = []
    for name, job in sorted(service.project.config.jobs.items()):
        last = latest.get(name)
        schedule = job.schedule
        upcoming = next_fire(schedule) if schedule is not None else None
        rows.append(
            {
                "job": name,
                "entity": job.entity,
                "schedule": schedule.describe() if schedule else "manual / cron only",
                "lane": job.priority_lane,
                "next_run": upcoming.isoformat() if upcoming else None,
                "last_run": last["started_at"] if last else None,
                "last_status": last["status"] if last else None,
                "last_error": last["error"] if last else None,
            }
        )
    return rows


def lanes_of(service: Partnersync) -> dict[str, str]:
    """Job → lane."""
    return {name: job.priority_lane for name, job in service.project.config.jobs.items()}


def validate_schedules(service: Partnersync) -> None:
    """Every schedule parses (a bad cron expression is a configuration error, said up front)."""
    from partnersync.scheduling.daemon import trigger_for

    for name, job in service.project.config.jobs.items():
        if job.schedule is None:
            continue
        try:
            trigger_for(job.schedule)
        except ValueError as exc:
            raise ConfigError(f"jobs.{name}.schedule: {exc}") from exc


async def run_daemon(
    service: Partnersync,
    *,
    executor: str = "in-process",
    run_at_start: bool = True,
    urgent_slots: int = 4,
    bulk_slots: int = 1,
    shutdown_grace: float = 30.0,
) -> None:
    """``partnersync schedule run``: schedule the project's jobs until SIGTERM/SIGINT."""
    from partnersync.scheduling.daemon import Daemon, InProcessExecutor

    validate_schedules(service)
    jobs = service.project.config.jobs
    if executor == "in-process":
        in_process = InProcessExecutor(
            lambda job: service.run_job(job, trigger="schedule"),
            lanes_of(service),
            urgent_slots=urgent_slots,
            bulk_slots=bulk_slots,
        )
        await Daemon(
            jobs,
            in_process,
            on_stop=service.stop.request,
            run_at_start=run_at_start,
            shutdown_grace=shutdown_grace,
            stop_requested=lambda: service.stop.requested,
        ).run()
        return
    if executor != "workers":
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}")
    from partnersync.scheduling.workers import JobQueue, WorkersExecutor

    ensure_queue_schema(service)
    queue = JobQueue(service.project.database_url)
    async with queue.app.open_async():
        await Daemon(
            jobs,
            WorkersExecutor(queue, lanes_of(service)),
            on_stop=service.stop.request,
            run_at_start=run_at_start,
            stop_requested=lambda: service.stop.requested,
        ).run()


async def run_worker(
    service: Partnersync,
    *,
    concurrency: int = 2,
    heartbeat: float = 10.0,
    stall_timeout: float = 30.0,
) -> None:
    """``partnersync worker``: run queued jobs until SIGTERM/SIGINT."""
    from partnersync.scheduling import workers

    ensure_queue_schema(service)
    queue = workers.JobQueue(
        service.project.database_url,
        lambda job: service.run_job(job, trigger="worker"),
        run_pull=lambda account, entity: service.pull(account, entity),
    )
    await workers.run_worker(
        queue,
        on_stop=service.stop.request,
        concurrency=concurrency,
        heartbeat=heartbeat,
        stall_timeout=stall_timeout,
        name=service.leases.holder,
        stop_requested=lambda: service.stop.requested,
    )


def _readable_directory(directory: Path) -> bool:
    return directory.is_dir() and os.access(directory, os.R_OK | os.X_OK)


QUEUE_SCHEMA_LOCK = 0x70_73_79_6E_63  # "psync": one process applies the schema at a time


def ensure_queue_schema(service: Partnersync) -> bool:
    """Apply procrastinate's schema to a PostgreSQL hub unless it is there; True if applied.

    Runs with ``partnersync db upgrade`` and before any scheduler or worker uses the queue,
    under a transaction-level advisory lock so processes starting together apply it once.
    """
    engine = service.store.engine
    if engine.dialect.name != "postgresql":
        raise ConfigError(
            "the workers executor needs a PostgreSQL hub ([hub] database = "
            '"postgresql://..." or PARTNERSYNC_DATABASE_URL); on SQLite run '
            "`partnersync schedule run` (in process)"
        )
    try:
        from procrastinate.schema import SchemaManager
    except ImportError as exc:
        raise ConfigError(
            "the workers executor needs the postgres extra: pip install 'partnersync[postgres]'"
        ) from exc
    with engine.begin() as connection:
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": QUEUE_SCHEMA_LOCK})
        present = connection.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        if present is not None:
            return False
        cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(SchemaManager.get_schema())  # no parameters: its % signs stay as they are
        cursor.close()
    log.info("applied the job queue's schema (procrastinate)")
    return True


def upgrade_database(service: Partnersync) -> list[str]:
    """``partnersync db upgrade``: the hub's migrations (run on open) and, on PostgreSQL with
    the postgres extra installed, the job queue's schema. Returns what was done."""
    done = [f"hub migrated to {current_revision(service)}"]
    if service.store.engine.dialect.name == "postgresql":
        try:
            applied = ensure_queue_schema(service)
        except ConfigError as exc:
            done.append(f"job queue schema skipped: {exc}")
        else:
            done.append("job queue schema applied" if applied else "job queue schema present")
    return done


def current_revision(service: Partnersync) -> str:
    """The hub's Alembic revision."""
    with service.store.engine.connect() as connection:
        revision = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return str(revision)


def status(service: Partnersync) -> dict[str, Any]:
    """At a glance: accounts, jobs (schedule, next and last run), per account × entity the last
    runs and the lag (now − cursor), open dead letters, and who runs what right now."""
    now = datetime.now(UTC)
    cursors = {(c["account"], c["entity"]): c for c in service.cursors()}
    letters: dict[tuple[str, str], int] = {}
    for letter in service.dead_letters(limit=100_000):
        key = (letter["account"], letter["entity"])
        letters[key] = letters.get(key, 0) + 1
    last_runs: dict[tuple[str, str, str], dict[str, Any]] = {}
    for run in reversed(service.runs(limit=500)):
        last_runs[(run["account"], run["entity"], run["direction"])] = run
    streams = []
    for account, entity, direction in sorted(last_runs):
        run = last_runs[(account, entity, direction)]
        cursor = cursors.get((account, entity)) if direction == "pull" else None
        lag = cursor_lag(cursor["value"], now) if cursor is not None else None
        streams.append(
            {
                "account": account,
                "entity": entity,
                "direction": direction,
                "last_run": run["id"],
                "status": run["status"],
                "finished_at": run["finished_at"],
                "cursor": cursor["value"] if cursor else None,
                "lag_seconds": round(lag, 1) if lag is not None else None,
                "open_dead_letters": letters.get((account, entity), 0),
            }
        )
    return {
        "at": utcnow_iso(),
        "accounts": [{"name": a["name"], "platform": a["platform"]} for a in service.accounts()],
        "jobs": scheduled_jobs(service),
        "streams": streams,
        "running": [
            {"scope": lease["scope"], "holder": lease["holder"], "since": lease["granted_at"]}
            for lease in service.store.leases.every()
            if lease["live"]
        ],
        "open_dead_letters": sum(letters.values()),
    }


async def doctor(service: Partnersync) -> list[dict[str, Any]]:
    """Check a deployment and say what to fix: the database (reachable, migrated), the key
    (present, matching the data), every account's credentials (one cheap call each), file
    drops (readable), schedules (valid) and, for workers, the job queue."""
    checks: list[dict[str, Any]] = []

    def check(name: str, ok: bool, detail: str, fix: str = "") -> None:
        checks.append({"check": name, "ok": ok, "detail": detail, "fix": "" if ok else fix})

    check("database", True, f"{service.store.engine.dialect.name}, {current_revision(service)}")
    from partnersync.service import KeyAdmin

    try:
        keys = KeyAdmin(service.project).check()
        healthy = not keys["missing"] and not keys["unreadable"]
        check(
            "key",
            healthy,
            f"primary {keys['primary']}; values by key {keys['in_use']}"
            + (f"; missing {keys['missing']}" if keys["missing"] else "")
            + (f"; {keys['unreadable']} unreadable" if keys["unreadable"] else ""),
            "the key file lacks the key the hub's data is under: restore it, then "
            "`partnersync keys check`",
        )
    except (VaultError, PartnersyncError) as exc:
        check("key", False, str(exc), "see `partnersync keys check`")
    for account in service.accounts():
        name = account["name"]
        try:
            description = await service.test_account(name)
        except PartnersyncError as exc:
            check(
                f"account {name}",
                False,
                f"{type(exc).__name__}: {exc}",
                f"fix its credentials or URL: partnersync accounts add {name} ... (or test it: "
                f"partnersync accounts test {name})",
            )
            continue
        check(f"account {name}", True, description)
        if account["platform"] == "file":
            directory = Path(account["base_url"].removeprefix("file://"))
            readable = await blocking(_readable_directory, directory)
            check(
                f"drop {name}",
                readable,
                str(directory),
                f"make {directory} readable by this user",
            )
    try:
        validate_schedules(service)
        check("schedules", True, f"{sum(1 for j in scheduled_jobs(service) if j['next_run'])}")
    except ConfigError as exc:
        check("schedules", False, str(exc), "fix the schedule in partnersync.toml")
    if service.store.engine.dialect.name == "postgresql":
        with service.store.engine.connect() as connection:
            present = connection.execute(text("SELECT to_regclass('procrastinate_jobs')")).scalar()
        check(
            "job queue",
            present is not None,
            "procrastinate schema present" if present else "no procrastinate schema",
            "partnersync db upgrade (with partnersync[postgres] installed)",
        )
    return checks


NOT_SECRET_FIELDS = frozenset({"expires_at", "scope", "client_id", "app_key", "sign_method"})
"""Account secret fields that are not secrets themselves (shown, or needed to be readable)."""


def account_health(service: Partnersync) -> list[dict[str, Any]]:
    """Each account's health as the connect page shows it: the last successful call (a check or
    a run), the last check's error, token expiry and scopes (never the tokens), the last run and
    open dead letters, and a verdict — ``healthy``, ``attention`` (a failed last run or dead
    letters to look at), ``failing`` (the platform refused the last check, or the token has
    expired with no way to refresh it) or ``unchecked`` (nothing has talked to it yet)."""
    now = datetime.now(UTC)
    letters: dict[str, int] = {}
    for letter in service.dead_letters(limit=100_000):
        letters[letter["account"]] = letters.get(letter["account"], 0) + 1
    last_runs: dict[str, dict[str, Any]] = {}
    last_good_runs: dict[str, str] = {}
    for run in reversed(service.runs(limit=1000)):
        last_runs[run["account"]] = run
        if run["status"] in ("succeeded", "partial") and run["finished_at"]:
            last_good_runs[run["account"]] = run["finished_at"]
    rows = []
    for account in service.accounts():
        name = account["name"]
        try:
            fields = service.store.accounts.secrets(name)
        except (VaultError, PartnersyncError):
            fields = {}
        if service.redactor is not None:
            service.redactor.register(
                *(value for key, value in fields.items() if key not in NOT_SECRET_FIELDS)
            )
        expires = fields.get("expires_at")
        expires_at = datetime.fromtimestamp(float(expires), UTC) if expires else None
        last_ok = max(filter(None, [account["last_ok_at"], last_good_runs.get(name)]), default=None)
        run = last_runs.get(name)
        problems = []
        verdict = "healthy"
        if not fields:
            verdict, problems = "failing", ["its secrets cannot be read with this key"]
        elif account["check_error"]:
            verdict = "failing"
            problems.append(f"last check failed: {_redacted(service, account['check_error'])}")
        elif expires_at is not None and expires_at <= now and not fields.get("refresh_token"):
            verdict = "failing"
            problems.append("the access token has expired: connect the account again")
        if run is not None and run["status"] in ("failed", "abandoned"):
            verdict = "attention" if verdict == "healthy" else verdict
            problems.append(
                f"last run {run['id']} ({run['entity']} {run['direction']}) {run['status']}"
            )
        if letters.get(name):
            verdict = "attention" if verdict == "healthy" else verdict
            problems.append(f"{letters[name]} open dead letter(s)")
        if verdict == "healthy" and last_ok is None:
            verdict = "unchecked"
        rows.append(
            {
                "name": name,
                "platform": account["platform"],
                "base_url": account["base_url"],
                "connected_at": account["created_at"],
                "last_ok_at": last_ok,
                "checked_at": account["checked_at"],
                "token_expires_at": expires_at.isoformat() if expires_at else None,
                "refreshable": bool(fields.get("refresh_token")),
                "scopes": fields.get("scope") or None,
                "last_run": (
                    {k: run[k] for k in ("id", "entity", "direction", "status", "finished_at")}
                    if run is not None
                    else None
                ),
                "open_dead_letters": letters.get(name, 0),
                "health": verdict,
                "problems": problems,
            }
        )
    return rows


def _redacted(service: Partnersync, text: str) -> str:
    """``text`` with every registered secret masked (errors are shown on the page)."""
    return service.redactor.redact(text) if service.redactor is not None else text
