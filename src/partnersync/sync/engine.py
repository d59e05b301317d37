"""The pull engine: platform pages → mapping → hub, incrementally and crash-safely (DESIGN §4).

For each (account, entity):

1. ``since`` = stored cursor − overlap (or ``--since``; nothing for ``--full``); the overlap
   covers clock skew, records sharing the cursor's timestamp and late-visible writes.
2. Each page is mapped record by record; a record that fails becomes a dead letter and the run
   goes on. A record dated before ``since`` is a partner contract violation (Shopify has returned
   records outside the requested window): it is stored, counted, and never moves the cursor.
3. The page's records, dead letters, run counters and — when the connector delivers pages in
   cursor order — the advanced cursor are committed in one transaction, so a crash re-reads at
   most one page and never skips a record. Unchanged content (same hash) is not written.
4. For connectors that cannot sort by update time the cursor is the run's start time, written
   once the run has read everything (the next run then asks from start − overlap).
5. The run ends ``succeeded``, ``partial`` (some dead letters), ``failed`` (an error stopped
   it; what was committed stays, and the cursor covers only that) or ``interrupted`` (Ctrl-C,
   SIGTERM: after the page being committed).

A run holds the lease of (account, entity, pull) for its whole life (one runner at a time,
anywhere), and each of its transactions is fenced by the lease's epoch.

The engine never sees a platform field name: it reads ``origin`` and the capability's
``cursor_field`` of canonical records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import orjson

from partnersync.connectors.base import Connector, Page, PullPlan
from partnersync.errors import MappingError, PartnersyncError
from partnersync.failpoints import failpoint
from partnersync.logs import CURRENT_RUN
from partnersync.mapping.mapper import FieldOverride, MapContext, Mapper
from partnersync.sync.offload import blocking
from partnersync.sync.runner import HeldLease, RunEngine
from partnersync.sync.store import DeadLetter, MappedRecord, content_hash
from partnersync.sync.store.leases import scope_of

DEFAULT_OVERLAP = timedelta(seconds=120)
UNFINISHED = frozenset({"interrupted", "abandoned", "failed"})
RESUME_WITHIN = timedelta(hours=24)
"""An unsorted walk interrupted less than this long ago goes on from its last page; an older
one starts over (its changes since would be re-read anyway, from its old start)."""
"""Statuses of a run that stopped before reading everything."""
log = logging.getLogger("partnersync.sync")


@dataclass(frozen=True)
class PullOptions:
    """How to pull: ``full`` ignores the cursor; ``since`` overrides it."""

    full: bool = False
    since: datetime | None = None
    overlap: timedelta = DEFAULT_OVERLAP


@dataclass
class PullProgress:
    """Running totals, handed to the progress callback after each page."""

    pages: int = 0
    fetched: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    dead_lettered: int = 0
    requests: int = 0


@dataclass(frozen=True)
class RunSummary:
    """How a run ended."""

    run_id: int
    account: str
    entity: str
    status: str
    since: datetime | None
    cursor_before: str | None
    cursor_after: str | None
    progress: PullProgress
    error: str | None = None
    resumed_from: tuple[int, str] | None = None
    """(run id, status) of the run before this one when it did not finish: this run goes on
    from its last committed page."""
    resumed_walk: bool = False
    """The run went on with an unsorted walk from the page token the earlier run left."""


def _walk_to_resume(
    previous: dict[str, Any] | None,
    options: PullOptions,
    since: datetime | None,
    now: datetime,
) -> tuple[str, datetime | None, datetime] | None:
    """The unsorted walk an unfinished previous run left to go on with — its page token, its
    ``since`` and when it began — if it covers what this run would read (from the same or an
    earlier time) and began less than :data:`RESUME_WITHIN` ago."""
    if (
        previous is None
        or previous["status"] not in UNFINISHED
        or not previous.get("resume_token")
        or not previous.get("walk_started_at")
        or options.since is not None
    ):
        return None
    walk_started = datetime.fromisoformat(previous["walk_started_at"])
    if now - walk_started > RESUME_WITHIN:
        return None
    walk_since = parse_cursor(previous.get("walk_since"))
    if walk_since is not None and (since is None or walk_since > since):
        return None  # the old walk started later than this run must read from
    return previous["resume_token"], walk_since, walk_started


def parse_cursor(value: str | None) -> datetime | None:
    """A stored timestamp cursor."""
    return datetime.fromisoformat(value) if value else None


class PullEngine(RunEngine):
    """Runs pulls into one hub store."""

    async def pull(
        self,
        connector: Connector,
        mapper_class: type[Mapper[Any]],
        entity: str,
        *,
        options: PullOptions | None = None,
        overrides: dict[str, FieldOverride] | None = None,
        on_page: Callable[[PullProgress], None] | None = None,
    ) -> RunSummary:
        """Pull ``entity`` from ``connector`` into the hub; returns the run's summary.

        Raises AlreadyRunningError (before any I/O) while another run holds the scope.
        """
        account = connector.account.name
        connector.capabilities.require_pull(entity)
        async with self.leases.hold(
            scope_of("pull", account, entity), runs_of=(account, entity, "pull")
        ) as held:
            return await self._pull(
                held, connector, mapper_class, entity, options or PullOptions(), overrides, on_page
            )

    async def _pull(
        self,
        held: HeldLease,
        connector: Connector,
        mapper_class: type[Mapper[Any]],
        entity: str,
        options: PullOptions,
        overrides: dict[str, FieldOverride] | None,
        on_page: Callable[[PullProgress], None] | None,
    ) -> RunSummary:
        account = connector.account.name
        capability = connector.capabilities.require_pull(entity)
        previous = await blocking(self.store.runs.latest, account, entity, "pull")
        resumed_from = (
            (previous["id"], previous["status"])
            if previous and previous["status"] in UNFINISHED
            else None
        )
        cursor_before = await blocking(self.store.cursors.get, account, entity)
        stored = parse_cursor(cursor_before)
        since: datetime | None
        if options.since is not None:
            since = options.since
        elif options.full or stored is None or not capability.incremental:
            since = None
        else:
            since = stored - options.overlap
        run_started = self.clock.now()
        walk = _walk_to_resume(previous, options, since, run_started)
        resume_token: str | None = None
        if walk is not None:
            resume_token, since, walk_started = walk
        else:
            walk_started = run_started
        run_id = await blocking(
            lambda: self.store.runs.start(
                account=account,
                entity=entity,
                direction="pull",
                mode="full" if since is None else "incremental",
                since=since.isoformat() if since else None,
                cursor_before=cursor_before,
                lease=held.lease,
                walk_started_at=walk_started.isoformat(),
                walk_since=since.isoformat() if since else None,
                resume_token=resume_token,
            )
        )
        held.run_id = run_id
        CURRENT_RUN.set(run_id)
        if resumed_from:
            log.info(
                "run %s of %s/%s resumes after run %s (%s) from %s",
                run_id,
                account,
                entity,
                *resumed_from,
                "its last committed page"
                if resume_token
                else f"cursor {cursor_before}"
                if cursor_before
                else "the start",
            )
        progress = PullProgress()
        high_water = stored
        mapper: Mapper[Any] | None = None
        cursor_after = cursor_before
        requests_before = connector.requests_sent
        stopped = True
        sorted_pages = capability.sorted_by_cursor
        try:
            plan = (
                PullPlan(sorted_by_cursor=False, resumable=True, how="resumed")
                if resume_token is not None
                else await connector.plan_pull(entity, since=since)
            )
            sorted_pages = plan.sorted_by_cursor
            unsorted_walk = not sorted_pages and plan.resumable
            if plan.how != "paged":
                log.info("run %s of %s/%s reads by %s", run_id, account, entity, plan.how)
            async for page in connector.pull(entity, since=since, resume=resume_token):
                failpoint("after_http")
                if mapper is None:
                    await connector.prepare()
                    context = MapContext(account, connector.platform, connector.mapping_settings())
                    mapper = mapper_class(context, overrides)
                records, letters, out_of_window, page_high = self._map_page(
                    connector, entity, mapper, page, since, capability.cursor_field
                )
                if sorted_pages and page_high is not None:
                    high_water = page_high if high_water is None else max(high_water, page_high)
                page_cursor = (
                    high_water.isoformat() if sorted_pages and high_water is not None else None
                )
                failpoint("before_page_commit")
                spent = connector.requests_sent - requests_before
                requests_before = connector.requests_sent
                outcome = await blocking(
                    self.store.records.commit_page,
                    run_id=run_id,
                    account=account,
                    entity=entity,
                    page=page.number,
                    requests=spent,
                    records=records,
                    dead_letters=letters,
                    out_of_window=out_of_window,
                    cursor=page_cursor,
                    resume_token=page.resume_token,
                    resumable=unsorted_walk,
                )
                failpoint("after_page_commit")
                if page_cursor is not None:
                    cursor_after = page_cursor
                progress.pages += 1
                progress.requests += spent
                progress.fetched += len(page.records)
                progress.created += outcome.created
                progress.updated += outcome.updated
                progress.unchanged += outcome.unchanged
                progress.dead_lettered += outcome.dead_lettered
                if on_page is not None:
                    on_page(progress)
                if self.stop.requested:
                    break
            else:
                stopped = False
            leftover = connector.requests_sent - requests_before
            if leftover:
                await blocking(self.store.runs.add_requests, run_id, leftover)
                progress.requests += leftover
            if not sorted_pages and not stopped:
                # The walk's start, not this run's: a resumed walk began in an earlier run,
                # and what changed since then must be read by the next one.
                cursor_after = walk_started.isoformat()
                await blocking(self.store.cursors.put, account, entity, cursor_after, run_id)
        except PartnersyncError as exc:
            error = f"{type(exc).__name__}: {exc}"
            await self._failed(run_id, cursor_after, error)
            return RunSummary(
                run_id,
                account,
                entity,
                "failed",
                since,
                cursor_before,
                cursor_after,
                progress,
                error,
                resumed_from,
                resume_token is not None,
            )
        except Exception as exc:
            # A bug, not a platform or data problem: record the run as failed, then let it surface.
            error = f"internal error: {type(exc).__name__}: {exc}"
            await self._failed(run_id, cursor_after, error)
            raise
        except BaseException:
            # Ctrl-C or cancellation: the loop may be going away, so no await here.
            self.store.runs.finish(
                run_id,
                status="interrupted",
                cursor_after=cursor_after,
                error="interrupted; pages committed before it are kept",
            )
            raise
        if stopped:
            await blocking(
                self.store.runs.finish,
                run_id,
                status="interrupted",
                cursor_after=cursor_after,
                error=f"stopped after a committed page ({self.stop.reason})",
            )
            return RunSummary(
                run_id,
                account,
                entity,
                "interrupted",
                since,
                cursor_before,
                cursor_after,
                progress,
                f"stopped ({self.stop.reason}); run again to resume",
                resumed_from,
                resume_token is not None,
            )
        status = "partial" if progress.dead_lettered else "succeeded"
        await blocking(self.store.runs.finish, run_id, status=status, cursor_after=cursor_after)
        return RunSummary(
            run_id,
            account,
            entity,
            status,
            since,
            cursor_before,
            cursor_after,
            progress,
            resumed_from=resumed_from,
            resumed_walk=resume_token is not None,
        )

    async def _failed(self, run_id: int, cursor_after: str | None, error: str) -> None:
        await blocking(
            self.store.runs.finish, run_id, status="failed", cursor_after=cursor_after, error=error
        )

    @staticmethod
    def _map_page(
        connector: Connector,
        entity: str,
        mapper: Mapper[Any],
        page: Page,
        since: datetime | None,
        cursor_field: str,
    ) -> tuple[list[MappedRecord], list[DeadLetter], int, datetime | None]:
        records: list[MappedRecord] = []
        letters: list[DeadLetter] = []
        out_of_window = 0
        high: datetime | None = None
        for raw in page.records:
            source_ref = connector.record_source(entity, raw) or f"page {page.number}"
            try:
                canonical = mapper.map(raw)
            except MappingError as exc:
                raw_stamp = connector.record_updated_at(entity, raw)
                if raw_stamp is not None and (since is None or raw_stamp >= since):
                    high = raw_stamp if high is None else max(high, raw_stamp)
                letters.append(
                    DeadLetter(
                        external_id=exc.external_id,
                        field=exc.field,
                        reason=exc.reason,
                        error_class=type(exc).__name__,
                        payload=orjson.dumps(raw, default=str),
                        source_ref=source_ref,
                    )
                )
                continue
            data = canonical.model_dump_json().encode()
            stamp: datetime | None = getattr(canonical, cursor_field, None)
            origin = canonical.origin
            records.append(
                MappedRecord(
                    external_id=origin.external_id,
                    data=data,
                    content_hash=content_hash(data),
                    source_updated_at=stamp.isoformat() if stamp else None,
                    source_ref=source_ref,
                    handle=connector.record_handle(entity, raw),
                )
            )
            if stamp is None:
                continue
            if since is not None and stamp < since:
                out_of_window += 1
                continue
            high = stamp if high is None else max(high, stamp)
        return records, letters, out_of_window, high
