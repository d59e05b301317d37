"""``partnersync schedule run``: APScheduler 3 decides when each job of the project file is due.

The only module that imports APScheduler. Every scheduled job is added with its settings spelled
out — never APScheduler's defaults (a 1-second misfire grace would silently drop a run that is a
little late):

* ``max_instances=1``: a job never overlaps itself (a run longer than its interval makes the
  next fire wait for the one after it);
* ``coalesce=True`` and ``misfire_grace_time`` from the schedule (default 300 s): after the
  machine slept or the process was stopped, the missed fires of a job run once, not once each;
* each due job is handed to the executor: in process (run now, on this event loop, within its
  lane's concurrency) or on workers (deferred to procrastinate).

SIGTERM or SIGINT stops scheduling, asks running jobs to stop after the page they are committing,
waits for them (up to ``shutdown_grace`` seconds; a job still running then — say, retrying a
platform that is down — is cancelled and ends ``interrupted``), and returns.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import anyio
from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from partnersync.config import JobConfig, ScheduleConfig
from partnersync.errors import AlreadyRunningError, PartnersyncError

log = logging.getLogger("partnersync.schedule")


class Executor(Protocol):
    """Where a due job runs."""

    async def submit(self, job: str) -> None:
        """Run (or hand off) ``job``; returns when it is done (in process) or queued."""


def trigger_for(schedule: ScheduleConfig) -> BaseTrigger:
    """The APScheduler trigger of a schedule (cron expressions in UTC unless a zone is set)."""
    jitter = int(schedule.jitter_seconds) or None
    if schedule.cron is not None:
        trigger = CronTrigger.from_crontab(schedule.cron, timezone=schedule.timezone)
        trigger.jitter = jitter
        return trigger
    assert schedule.every_seconds is not None
    return IntervalTrigger(seconds=schedule.every_seconds, timezone=UTC, jitter=jitter)


def next_fire(schedule: ScheduleConfig, after: datetime | None = None) -> datetime | None:
    """When ``schedule`` fires next after ``after`` (now by default)."""
    now = after or datetime.now(UTC)
    trigger = trigger_for(schedule)
    if isinstance(trigger, IntervalTrigger):
        interval: timedelta = trigger.interval
        return now + interval
    fire = trigger.get_next_fire_time(None, now)
    return fire if isinstance(fire, datetime) else None


class Daemon:
    """Schedules the project's jobs and hands each due one to the executor."""

    def __init__(
        self,
        jobs: dict[str, JobConfig],
        executor: Executor,
        *,
        on_stop: Callable[[str], None],
        run_at_start: bool = True,
        shutdown_grace: float = 30.0,
        stop_requested: Callable[[], bool] = lambda: False,
    ) -> None:
        self.schedules = {
            name: job.schedule for name, job in jobs.items() if job.schedule is not None
        }
        self.executor = executor
        self.on_stop = on_stop
        self.run_at_start = run_at_start
        self.shutdown_grace = shutdown_grace
        self.stop_requested = stop_requested
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()

    def request_stop(self, reason: str) -> None:
        """Stop scheduling; running jobs end after their current page."""
        if not self._stopping.is_set():
            log.info("stopping (%s): no new runs; running jobs end after their page", reason)
            self.on_stop(reason)
            self._stopping.set()

    async def run(self) -> None:
        """Schedule until stopped (SIGTERM/SIGINT, or :meth:`request_stop`)."""
        if not self.schedules:
            raise PartnersyncError(
                'no job has a schedule: add `schedule = { every = "5m" }` (or `cron = ...`) '
                "to a job (a jobs.NAME table) in partnersync.toml"
            )
        scheduler = AsyncIOScheduler(timezone=UTC)
        scheduler.add_listener(self._on_event, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        now = datetime.now(UTC)
        for name, schedule in self.schedules.items():
            options: dict[str, Any] = {}
            if self.run_at_start:
                options["next_run_time"] = now
            scheduler.add_job(
                self._fire,
                trigger_for(schedule),
                args=[name],
                id=name,
                name=name,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=int(schedule.misfire_grace_seconds),
                **options,
            )
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async with anyio.create_task_group() as group:
                group.start_soon(self._watch_signals, signals)
                if self.stop_requested():
                    # SIGTERM came while starting up, before our receiver was listening.
                    self.request_stop("SIGTERM before start")
                scheduler.start()
                log.info("scheduling %s", ", ".join(sorted(self.schedules)))
                await self._stopping.wait()
                # Pause, not shutdown: APScheduler's shutdown cancels running coroutine jobs,
                # and a running job must first commit its page.
                scheduler.pause()
                with anyio.move_on_after(self.shutdown_grace):
                    await self._idle.wait()
                if self._tasks:
                    # Stuck past the grace (e.g. retrying a platform that is down): cancel; the
                    # runs end "interrupted", their committed pages kept.
                    log.warning(
                        "%d job(s) still running after %.0f s: cancelling them",
                        len(self._tasks),
                        self.shutdown_grace,
                    )
                    for task in list(self._tasks):
                        task.cancel()
                    await self._idle.wait()
                scheduler.shutdown(wait=False)
                group.cancel_scope.cancel()

    async def _watch_signals(self, signals: Any) -> None:
        async for signum in signals:
            self.request_stop(signal.Signals(signum).name)

    def _on_event(self, event: JobExecutionEvent) -> None:
        schedule = self.schedules.get(event.job_id)
        if schedule is None:
            return
        if event.code == EVENT_JOB_MAX_INSTANCES:
            log.info("job %s: still running, this fire skipped (never two at once)", event.job_id)
        elif event.code == EVENT_JOB_MISSED:
            log.warning(
                "job %s: fire of %s missed by more than its grace (%s s)",
                event.job_id,
                event.scheduled_run_time,
                schedule.misfire_grace_seconds,
            )

    async def _fire(self, name: str) -> None:
        if self._stopping.is_set():
            return
        task = asyncio.current_task()
        assert task is not None  # APScheduler runs coroutine jobs as tasks
        self._tasks.add(task)
        self._idle = anyio.Event()
        try:
            await self.executor.submit(name)
        except AlreadyRunningError as exc:
            log.info("job %s not started: %s", name, exc)
        except PartnersyncError as exc:
            log.error("job %s: %s: %s", name, type(exc).__name__, exc)
        except Exception:
            log.exception("job %s: internal error", name)
        except asyncio.CancelledError:
            log.warning("job %s cancelled at shutdown", name)
        finally:
            self._tasks.discard(task)
            if not self._tasks:
                self._idle.set()


class InProcessExecutor:
    """Runs a due job now, on this event loop, within its lane's concurrency: jobs of the
    ``urgent`` lane (orders, stock, shipments) never wait behind a catalogue backfill."""

    def __init__(
        self,
        run_job: Callable[[str], Awaitable[Any]],
        lanes: dict[str, str],
        *,
        urgent_slots: int = 4,
        bulk_slots: int = 1,
    ) -> None:
        self.run_job = run_job
        self.lanes = lanes
        self.limiters = {
            "urgent": anyio.CapacityLimiter(urgent_slots),
            "bulk": anyio.CapacityLimiter(bulk_slots),
        }

    async def submit(self, job: str) -> None:
        """Run ``job`` once its lane has a free slot."""
        async with self.limiters[self.lanes.get(job, "urgent")]:
            await self.run_job(job)
