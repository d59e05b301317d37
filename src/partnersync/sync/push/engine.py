"""The push engine: hub → platforms through one exporter per entity (DESIGN §2 and §4, push).

Every push runs the same steps, whatever the entity: read the target's settings → plan (pure
reads of the hub) → mass-change guard → outbox rows with their keys → send → verify lost answers
→ mark done together with the bindings, baselines and hub copies the write changed. What differs
per entity lives in its :class:`Exporter`; the engine has no ``entity ==`` branch.

A run is ``succeeded`` only when every write it planned ended done; a write refused by the
platform is dead-lettered (``partial``); a write neither done nor dead-lettered when the run ends
makes it ``failed`` — never a silent success; a stop request (SIGTERM) ends it ``interrupted``
with the unsent rows open, keys kept. The run holds the lease of (target, entity, push).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from partnersync.connectors.base import Connector, Writer
from partnersync.errors import Action, ConfigError, ConnectorError, PartnersyncError
from partnersync.logs import CURRENT_RUN
from partnersync.mapping.export import ExportMapper
from partnersync.mapping.mapper import Mapper
from partnersync.sync.offload import blocking
from partnersync.sync.push.plan import (
    MassChangeError,
    PlannedWrite,
    PushOptions,
    PushPlan,
    PushSummary,
    fresh_idempotency_key,
)
from partnersync.sync.runner import HeldLease, RunEngine
from partnersync.sync.store import Lease, OutboxEntry
from partnersync.sync.store.leases import scope_of

T = TypeVar("T")


class Exporter(ABC):
    """How one entity is pushed: its planner and its sender.

    ``reads`` names the entity pulled from the target to know what it holds; a push refuses to
    run before that entity was ever pulled from the target (it never writes over what it has
    not read).
    """

    entity: ClassVar[str]
    reads: ClassVar[str | None] = None

    def __init__(self, engine: PushEngine, writer: Writer) -> None:
        self.engine = engine
        self.store = engine.store
        self.writer = writer

    @abstractmethod
    def plan(self, target: str, options: PushOptions, settings: Mapping[str, Any]) -> PushPlan:
        """What the target should receive; ``settings`` are the target's (e.g. its currency)."""

    @abstractmethod
    async def send(self, push: PushRun) -> None:
        """Send the plan's writes through the outbox."""


class PushRun:
    """One push run under way: the connector, the plan, the summary, and the outbox steps."""

    def __init__(
        self,
        engine: PushEngine,
        connector: Connector,
        plan: PushPlan,
        options: PushOptions,
        summary: PushSummary,
        target_mapper: type[Mapper[Any]] | None,
        export_mapper: type[ExportMapper[Any]] | None = None,
    ) -> None:
        self.engine = engine
        self.export_mapper = export_mapper
        self.store = engine.store
        self.connector = connector
        self.plan = plan
        self.options = options
        self.summary = summary
        self.target_mapper = target_mapper

    @property
    def target(self) -> str:
        """The account written to."""
        return self.plan.target

    async def db(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a store call in a worker thread: no database call blocks the event loop."""
        return await blocking(call, *args, **kwargs)

    async def enqueue(self, writes: Sequence[PlannedWrite]) -> list[OutboxEntry]:
        """Outbox rows for ``writes``: a still-open row for the same content is reused (with its
        key); otherwise a new row with a fresh key naming the target."""
        target, entity = self.plan.target, self.plan.entity
        rows = []
        for write in writes:
            content = write.content_hash
            payload = {
                **write.payload,
                "_creates": write.creates,
                "_label": write.label,
                "_options": self.options.describe(),
            }
            fresh_key = fresh_idempotency_key(target, entity, write.key, content)
            rows.append((write.key, write.operation, content, payload, write.source_ref, fresh_key))
        return await self.db(
            self.store.outbox.enqueue,
            run_id=self.summary.run_id,
            target=target,
            entity=entity,
            writes=rows,
        )

    async def dead(
        self, entries: Iterable[OutboxEntry], reason: str, error_class: str, operation: str
    ) -> None:
        """Dead-letter rows the platform refused, naming the record and the reason."""
        for entry in entries:
            label = entry.payload.get("_label")
            named = f"{label}: {reason}" if label and label not in reason else reason
            await self.db(self.store.outbox.mark, [entry.id], "dead", error=named)
            await self.db(
                self.store.dead_letters.add_push,
                run_id=self.summary.run_id,
                target=self.plan.target,
                entity=self.plan.entity,
                entry=entry,
                reason=named,
                error_class=error_class,
                operation=operation,
            )
            self.summary.dead_lettered += 1

    async def send_each(
        self, deliver: Callable[[OutboxEntry], Awaitable[None]], operation: str
    ) -> None:
        """Send the plan's writes one at a time; a refused write is dead-lettered and the run
        goes on, but three failures in a row that look like an outage stop it."""
        failing_in_a_row = 0
        for entry in await self.enqueue(self.plan.writes):
            if self.engine.stop.requested:
                return  # what is left stays open in the outbox, keys kept, for the next run
            if not entry.open:
                continue
            try:
                await deliver(entry)
                failing_in_a_row = 0
            except ConnectorError as exc:
                await self.dead([entry], str(exc), type(exc).__name__, operation)
                failing_in_a_row = failing_in_a_row + 1 if exc.action is Action.RETRY else 0
                if failing_in_a_row >= FAILURES_BEFORE_STOPPING:
                    raise  # the platform looks down: stop instead of dead-lettering everything


FAILURES_BEFORE_STOPPING = 3

EXPORTERS: dict[str, type[Exporter]] = {}
"""Entity → exporter class (filled in by the exporter modules)."""


def exporter(cls: type[Exporter]) -> type[Exporter]:
    """Register an exporter for its entity."""
    EXPORTERS[cls.entity] = cls
    return cls


class PushEngine(RunEngine):
    """Runs pushes from one hub store."""

    def exporter(self, connector: Connector, entity: str) -> Exporter:
        """The exporter of ``entity`` within the connector's declared writer for it."""
        cls = EXPORTERS.get(entity)
        if cls is None:
            raise ConfigError(f"cannot push {entity!r}; pushable: {sorted(EXPORTERS)}")
        capability = connector.capabilities.entities.get(entity)
        if capability is None or capability.writer is None:
            raise ConfigError(f"the {connector.platform} connector cannot receive {entity}")
        return cls(self, capability.writer)

    def guard(self, plan: PushPlan, options: PushOptions) -> None:
        """Stop a plan that would change too much at once (unless forced)."""
        if options.force or not plan.target_records:
            return
        share = plan.drastic / plan.target_records
        if share > options.max_drastic_share:
            raise MassChangeError(
                f"refusing to push: {plan.drastic} of {plan.target_records} {plan.entity} records "
                f"on {plan.target} ({share:.0%}) would drop to zero stock or lose over half their "
                f"price (limit {options.max_drastic_share:.0%}); check the source, or pass --force",
                plan,
            )

    async def push(
        self,
        connector: Connector,
        entity: str,
        options: PushOptions,
        *,
        target_mapper: type[Mapper[Any]] | None = None,
        export_mapper: type[ExportMapper[Any]] | None = None,
    ) -> PushSummary:
        """Plan, guard, then send; a dry run stops after the plan and writes nothing.

        ``target_mapper`` reads levels re-read after a stale compare; ``export_mapper`` (from
        the target's spec) builds the payloads of writes that carry one. The run holds the
        lease of (target, entity, push); AlreadyRunningError before any I/O otherwise.
        """
        target = connector.account.name
        exporter = self.exporter(connector, entity)
        async with self.leases.hold(
            scope_of("push", target, entity), runs_of=(target, entity, "push")
        ) as held:
            return await self._push(
                held, connector, exporter, entity, options, target_mapper, export_mapper
            )

    async def _push(
        self,
        held: HeldLease,
        connector: Connector,
        exporter: Exporter,
        entity: str,
        options: PushOptions,
        target_mapper: type[Mapper[Any]] | None,
        export_mapper: type[ExportMapper[Any]] | None,
    ) -> PushSummary:
        target = connector.account.name
        if (
            exporter.reads is not None
            and await blocking(self.store.cursors.get, target, exporter.reads) is None
        ):
            raise ConfigError(
                f"{target}'s {exporter.reads} were never pulled: pull them first "
                f"(partnersync sync pull {target} {exporter.reads}), so the push knows what "
                f"{target} holds"
            )
        await connector.prepare()
        plan = await blocking(exporter.plan, target, options, connector.mapping_settings())
        self.guard(plan, options)
        run_id = await blocking(self._open_run, plan, options, held.lease)
        held.run_id = run_id
        CURRENT_RUN.set(run_id)
        summary = PushSummary(run_id, target, entity, "succeeded", plan)
        if options.dry_run:
            await blocking(self.store.runs.finish, run_id, status="succeeded", cursor_after=None)
            return summary
        before = connector.requests_sent
        push = PushRun(self, connector, plan, options, summary, target_mapper, export_mapper)
        try:
            await exporter.send(push)
        except PartnersyncError as exc:
            summary.status, summary.error = "failed", f"{type(exc).__name__}: {exc}"
        except BaseException:
            # Ctrl-C or cancellation: no await; open outbox rows keep their keys for the rerun.
            self.store.runs.finish(
                run_id,
                status="interrupted",
                cursor_after=None,
                error="interrupted; writes not yet sent stay in the outbox with their keys",
            )
            raise
        if self.stop.requested and summary.status != "failed":
            summary.status = "interrupted"
            summary.error = f"stopped ({self.stop.reason}); run again to send the rest"
        summary.requests = connector.requests_sent - before
        await blocking(self._close_run, summary)
        return summary

    def _open_run(self, plan: PushPlan, options: PushOptions, lease: Lease | None = None) -> int:
        """Start the run; record conflicts, adoptions and problems; end rows no longer wanted."""
        target, entity = plan.target, plan.entity
        run_id = self.store.runs.start(
            account=target,
            entity=entity,
            direction="push",
            mode="dry-run" if options.dry_run else "push",
            since=None,
            cursor_before=None,
            lease=lease,
        )
        self.store.conflicts.record(run_id, target, entity, plan.conflicts)
        self.store.runs.add_counts(
            run_id,
            unchanged=plan.unchanged,
            skipped=len(plan.problems),
            conflicts=len(plan.conflicts),
        )
        if options.dry_run:
            return run_id
        for key, external_id, baseline in plan.adoptions:
            self.store.outbox.complete(
                target, entity, done=[], bindings={key: external_id}, baselines={key: baseline}
            )
        for problem in plan.problems:
            self.store.dead_letters.add_problem(
                run_id=run_id,
                target=target,
                entity=entity,
                key=problem.key,
                reason=problem.reason,
                payload={"record": problem.payload, "_options": options.describe()},
                source_ref=problem.source_ref,
            )
        # Open rows this plan no longer wants (the state they aimed at is gone) end here.
        self.store.outbox.supersede_open(
            target, entity, keep={(w.key, w.content_hash) for w in plan.writes}
        )
        return run_id

    def _close_run(self, summary: PushSummary) -> None:
        """Settle the run's status from what was sent, refused and left open."""
        unsent = self.store.outbox.count_open(summary.run_id)
        if unsent and summary.status not in ("failed", "interrupted"):
            summary.status = "failed"
            summary.error = f"{unsent} planned write(s) were neither sent nor refused"
        if summary.status == "succeeded" and (summary.dead_lettered or summary.plan.problems):
            summary.status = "partial"
        self.store.runs.add_counts(
            summary.run_id,
            created=summary.created,
            updated=summary.updated,
            dead_lettered=summary.dead_lettered,
            requests=summary.requests,
        )
        self.store.runs.finish(
            summary.run_id, status=summary.status, cursor_after=None, error=summary.error
        )
