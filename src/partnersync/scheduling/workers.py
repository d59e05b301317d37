"""Jobs on worker processes: procrastinate, the PostgreSQL task queue (DESIGN §4).

``partnersync schedule run --executor workers`` defers each due job as a procrastinate job
(``queueing_lock`` = the job, so however many schedulers tick it is queued at most once;
``lock`` = the job, so two of its runs never overlap); ``partnersync worker`` processes on any
number of machines run them. Every run inside still holds the lease of its account × entity ×
direction (two jobs sharing one never overlap there either, and a stale run is fenced out); a
job that finds one held is retried by procrastinate a little later.

A worker that dies stops its procrastinate heartbeat; the other workers prune it after
``stall_timeout`` and retry its jobs (procrastinate's stalled-jobs query, run here every
heartbeat), so the job finishes elsewhere without loss.

Imported only when the workers executor is used: procrastinate and psycopg are the
``partnersync[postgres]`` extra.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from procrastinate import App, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import AlreadyEnqueued, UniqueViolation
from procrastinate.jobs import Status
from procrastinate.worker import Worker

from partnersync.errors import AlreadyRunningError, ConfigError, PartnersyncError
from partnersync.sync.store.leases import job_scope

log = logging.getLogger("partnersync.workers")

TASK_NAME = "partnersync.run_job"
PULL_TASK_NAME = "partnersync.pull"
"""A targeted pull of one account × entity (``partnersync serve --executor workers`` queues one
for each webhook delivery, coalesced while it waits)."""
PRIORITY = {"urgent": 10, "bulk": 0}
"""Procrastinate runs higher numbers first: orders and stock before catalogue backfills."""
QUEUES = ("urgent", "bulk")


class JobFailed(PartnersyncError):
    """A job ran and one of its runs failed (the job is marked failed in procrastinate)."""


def libpq_url(database_url: str) -> str:
    """The hub URL as libpq takes it (no SQLAlchemy driver suffix)."""
    for prefix in ("postgresql+psycopg://", "postgresql+psycopg2://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql://" + database_url.removeprefix(prefix)
    if not database_url.startswith("postgresql://"):
        raise ConfigError(
            'workers need a PostgreSQL hub: set [hub] database = "postgresql://..." '
            "(or PARTNERSYNC_DATABASE_URL); SQLite serves one box (schedule run without "
            "--executor workers)"
        )
    return database_url


class JobQueue:
    """The procrastinate app of one hub, with the one task that runs a job."""

    def __init__(
        self,
        database_url: str,
        run_job: Callable[[str], Awaitable[list[Any]]] | None = None,
        *,
        run_pull: Callable[[str, str], Awaitable[Any]] | None = None,
        retry_wait: int = 5,
    ) -> None:
        self.app = App(connector=PsycopgConnector(conninfo=libpq_url(database_url)))
        self._run_job = run_job
        self._run_pull = run_pull

        async def pull_task(account: str, entity: str) -> None:
            if self._run_pull is None:
                raise ConfigError("this process only defers pulls; run `partnersync worker`")
            result = await self._run_pull(account, entity)
            if getattr(result, "status", None) == "failed":
                raise JobFailed(f"pull {account}/{entity} failed: {result.error}")

        self.pull_task = self.app.task(
            name=PULL_TASK_NAME,
            retry=RetryStrategy(
                max_attempts=20, wait=retry_wait, retry_exceptions={AlreadyRunningError}
            ),
        )(pull_task)

        async def run_job_task(job: str) -> None:
            if self._run_job is None:
                raise ConfigError("this process only defers jobs; run `partnersync worker`")
            results = await self._run_job(job)
            failed = [r for r in results if getattr(r, "status", None) == "failed"]
            if failed:
                raise JobFailed(f"job {job}: {len(failed)} run(s) failed: {failed[0].error}")

        self.task = self.app.task(
            name=TASK_NAME,
            retry=RetryStrategy(
                max_attempts=20, wait=retry_wait, retry_exceptions={AlreadyRunningError}
            ),
        )(run_job_task)

    async def defer(self, job: str, lane: str) -> bool:
        """Queue ``job`` unless it is queued already; True if this call queued it."""
        scope = job_scope(job)
        try:
            await self.task.configure(
                lock=scope, queueing_lock=scope, queue=lane, priority=PRIORITY[lane]
            ).defer_async(job=job)
        except AlreadyEnqueued:
            log.debug("job %s is queued already", job)
            return False
        log.info("job %s queued (%s lane)", job, lane)
        return True

    async def defer_pull(self, account: str, entity: str) -> bool:
        """Queue a pull of ``account`` × ``entity`` unless one is queued and not started yet
        (that one will read this change too); True if this call queued it."""
        scope = f"pull:{account}:{entity}"
        try:
            await self.pull_task.configure(
                lock=scope, queueing_lock=scope, queue="urgent", priority=PRIORITY["urgent"]
            ).defer_async(account=account, entity=entity)
        except AlreadyEnqueued:
            return False
        log.info("pull of %s/%s queued", account, entity)
        return True

    async def retry_stalled(self, stall_timeout: float) -> int:
        """Put jobs of workers silent for ``stall_timeout`` seconds back in the queue."""
        manager = self.app.job_manager
        await manager.prune_stalled_workers(stall_timeout)
        stalled = list(await manager.get_stalled_jobs(seconds_since_heartbeat=stall_timeout))
        for job in stalled:
            try:
                await manager.retry_job(job)
            except UniqueViolation:
                # The same job is queued again already (its queueing lock): that run does the
                # work — a sync job reads what changed since its cursor — so this one ends here.
                log.warning(
                    "job %s of a stalled worker ends: the same job is queued again already", job.id
                )
                await manager.finish_job(job, Status.FAILED, delete_job=False)
            else:
                log.warning("job %s of a stalled worker goes back to the queue", job.id)
        return len(stalled)


class WorkersExecutor:
    """The scheduler's executor that hands due jobs to the queue."""

    def __init__(self, queue: JobQueue, lanes: dict[str, str]) -> None:
        self.queue = queue
        self.lanes = lanes

    async def submit(self, job: str) -> None:
        """Queue ``job`` in its lane (at most once however many schedulers tick)."""
        await self.queue.defer(job, self.lanes.get(job, "urgent"))


async def run_worker(
    queue: JobQueue,
    *,
    on_stop: Callable[[str], None],
    concurrency: int = 2,
    heartbeat: float = 10.0,
    stall_timeout: float = 30.0,
    name: str | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
) -> None:
    """Run jobs from the queue until SIGTERM/SIGINT: then running jobs end after their page,
    procrastinate waits for them, and the worker unregisters."""
    worker = Worker(
        app=queue.app,
        queues=list(QUEUES),
        concurrency=concurrency,
        name=name,
        update_heartbeat_interval=heartbeat,
        stalled_worker_timeout=stall_timeout,
        install_signal_handlers=False,
        listen_notify=True,
        delete_jobs="never",
    )
    async with queue.app.open_async(), anyio.create_task_group() as group:

        async def reap() -> None:
            while True:
                await anyio.sleep(heartbeat)
                try:
                    await queue.retry_stalled(stall_timeout)
                except Exception:
                    log.warning("could not look for stalled jobs", exc_info=True)

        async def watch(signals: Any) -> None:
            async for signum in signals:
                reason = signal.Signals(signum).name
                log.info("worker stopping (%s): running jobs end after their page", reason)
                on_stop(reason)
                await keep_stopping()

        async def keep_stopping() -> None:
            # Worker.run() clears a stop asked for before it started: ask until it ends.
            while True:
                worker.stop()
                await anyio.sleep(0.5)

        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            group.start_soon(watch, signals)
            group.start_soon(reap)
            if stop_requested():  # SIGTERM came while starting up
                group.start_soon(keep_stopping)
            await worker.run()
            group.cancel_scope.cancel()
