"""Inventory exporter: the sources' stock → absolute levels on the target, never overselling.

Pushed = max(0, floor((available − buffer) × allocation)), set as an absolute quantity with
compare-and-set on what we last read. How several source levels make one target level:

* levels at *different source locations* mapped to one target location (``locations``) add up
  — they are different stock feeding one channel location;
* the same SKU at the *same source location* reported by several source accounts is one stock
  seen twice: the first source listed in the job wins (adding them up would oversell);
* a target with a single location (WooCommerce) receives every source location's stock there;
* a source level equal to what this engine last wrote to that source (it is a channel we also
  push to) is an echo of our own write and is not sent anywhere as if it were new (two-way
  jobs otherwise apply the buffer on every hop and drain both sides).

A batch the platform applies all-or-none with one stale level is re-planned: stale levels are
re-read, the rest is sent again under fresh keys; a level the platform refuses outright (its item
is gone) is dead-lettered and the rest of its batch still lands.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from partnersync.connectors.base import InventoryWrite
from partnersync.errors import Action, ConfigError, ConnectorError, MappingError
from partnersync.mapping.mapper import MapContext
from partnersync.sync.push.engine import Exporter, PushRun, exporter
from partnersync.sync.push.plan import (
    FieldChange,
    PlannedWrite,
    Problem,
    PushOptions,
    PushPlan,
    digest,
    pushed_quantity,
)
from partnersync.sync.store import OutboxEntry

MAX_STALE_ROUNDS = 3
OPERATION = "set_inventory"


@exporter
class InventoryExporter(Exporter):
    """Stock levels, batched, compare-and-set."""

    entity = "inventory"
    reads = "inventory"

    def plan(
        self,
        target: str,
        options: PushOptions,
        settings: Mapping[str, Any],
        excluded: frozenset[str] = frozenset(),
    ) -> PushPlan:
        """Target levels to set from the sources' stock (``excluded``: keys not to plan)."""
        plan = PushPlan(target, "inventory")
        levels = self.store.records.of(target, "inventory")
        places = {str(r.data.get("location_name") or r.data["location_id"]) for r in levels}
        # A channel with a single stock location (WooCommerce keeps one stock per item) sells
        # every source location's stock from it.
        only = next(iter(places)) if len(places) == 1 else None
        stock, refs, echoes = self._source_stock(options, only)
        plan.target_records = len(levels)
        by_id = {(r.data["sku"], r.data["location_id"]): r for r in levels}
        by_name = {(r.data["sku"], r.data.get("location_name")): r for r in levels}
        known_skus = {r.data["sku"] for r in levels}
        for (sku, location), positions in sorted(stock.items()):
            if (sku, location) in echoes:
                continue
            found = by_id.get((sku, location)) or by_name.get((sku, location))
            if found is None:
                reason = (
                    f"unknown SKU {sku!r} on {target}: not created, only reported"
                    if sku not in known_skus
                    else f"SKU {sku!r} is not stocked at location {location!r} on {target}"
                )
                payload = {"sku": sku, "location": location}
                plan.problems.append(
                    Problem(f"{sku}@{location}", reason, refs[(sku, location)], payload)
                )
                continue
            if found.canonical_key in excluded:
                continue
            level = found.data
            # The binder keeps the handle; hubs filled before it did have it in the record.
            handle = found.handle or level.get("inventory_item_id")
            if not handle:
                reason = f"no write handle for {sku!r} on {target}: pull {target} inventory again"
                plan.problems.append(
                    Problem(found.canonical_key, reason, refs[(sku, location)], {"sku": sku})
                )
                continue
            desired = pushed_quantity(sum(positions.values()), options.buffer, options.allocation)
            current = int(level["available"])
            if desired == current:
                plan.unchanged += 1
                continue
            plan.writes.append(
                PlannedWrite(
                    key=found.canonical_key,
                    label=f"{sku} @ {level.get('location_name') or level['location_id']}",
                    operation=OPERATION,
                    changes=[FieldChange("available", current, desired)],
                    payload={
                        "handle": handle,
                        "location_id": level["location_id"],
                        "quantity": desired,
                        # compare-and-set where the platform can; else an absolute set
                        "change_from": current if self.writer.compare_and_set else None,
                        "target_external_id": found.external_id,
                    },
                    source_ref=refs[(sku, location)],
                    drastic=desired == 0 and current > 0,
                )
            )
        return plan

    def _source_stock(
        self, options: PushOptions, only_location: str | None
    ) -> tuple[
        dict[tuple[str, str], dict[str, int]],
        dict[tuple[str, str], str | None],
        set[tuple[str, str]],
    ]:
        """(SKU, target location) → {source location: units}, source refs, and echoes."""
        stock: dict[tuple[str, str], dict[str, int]] = {}
        refs: dict[tuple[str, str], str | None] = {}
        echoes: set[tuple[str, str]] = set()
        for source in options.sources:
            written = self.store.bindings.baselines(source, "inventory")
            for record in self.store.records.of(source, "inventory"):
                level = record.data
                location = str(level.get("location_name") or level.get("location_id") or "")
                mapped = only_location or options.locations.get(location, location)
                where = (str(level["sku"]), mapped)
                ours = written.get(record.canonical_key)
                if ours is not None and ours.get("available") == level["available"]:
                    echoes.add(where)
                    continue
                positions = stock.setdefault(where, {})
                positions.setdefault(location, int(level["available"]))
                refs.setdefault(where, record.source_ref)
        return stock, refs, echoes

    async def send(self, push: PushRun) -> None:
        """Batches under the writer's limit; stale levels re-read and re-planned, bounded."""
        excluded: set[str] = set()
        for _ in range(MAX_STALE_ROUNDS):
            entries = [e for e in await push.enqueue(push.plan.writes) if e.open]
            stale_items: list[str] = []
            replan = False
            size = self.writer.batch_limit
            for start in range(0, len(entries), size):
                if push.engine.stop.requested:
                    return  # the rest stays open in the outbox, keys kept
                batch = entries[start : start + size]
                outcome = await self._send_batch(push, batch, excluded, stale_items)
                replan = replan or outcome
            if not replan:
                return
            if stale_items:
                await self._refresh_levels(push, sorted(set(stale_items)))
            again = await push.db(self.plan, push.target, push.options, {}, frozenset(excluded))
            push.plan.writes = again.writes
        raise ConnectorError(f"inventory on {push.target} kept changing under us; try again later")

    async def _send_batch(
        self,
        push: PushRun,
        batch: Sequence[OutboxEntry],
        excluded: set[str],
        stale_items: list[str],
    ) -> bool:
        """Send one batch; True when part of it must be planned again."""
        batch_key = digest(push.target, *sorted(e.idempotency_key for e in batch))
        ids = [e.id for e in batch]
        await push.db(self.store.outbox.mark, ids, "sending", batch_key=batch_key, attempt=True)
        writes = [
            InventoryWrite(
                e.payload["handle"],
                e.payload["location_id"],
                int(e.payload["quantity"]),
                e.payload["change_from"],
            )
            for e in batch
        ]
        try:
            outcome = await push.connector.set_inventory(writes, batch_key)
        except ConnectorError as exc:
            if exc.action is Action.RETRY:
                raise  # left 'sending' under its key: the next run repeats it safely
            await push.dead(batch, str(exc), type(exc).__name__, OPERATION)
            excluded.update(e.canonical_key for e in batch)
            return False
        if outcome.applied:
            await self._landed(push, batch)
            return False
        if not outcome.rejected and not outcome.stale:
            reason = "; ".join(outcome.errors) or "refused"
            await push.dead(batch, reason, "WriteRefused", OPERATION)
            excluded.update(e.canonical_key for e in batch)
            return False
        superseded, landed = [], []
        for index, entry in enumerate(batch):
            if index in outcome.rejected:
                await push.dead([entry], outcome.rejected[index], "WriteRefused", OPERATION)
                excluded.add(entry.canonical_key)
            elif index in outcome.stale:
                stale_items.append(str(entry.payload["handle"]))
                superseded.append(entry)
            elif self.writer.all_or_none:
                superseded.append(entry)  # nothing of the batch applied: plan it again
            else:
                landed.append(entry)  # the platform applied the items it did not refuse
        await push.db(self.store.outbox.mark, [e.id for e in superseded], "superseded")
        if landed:
            await self._landed(push, landed)
        return bool(superseded)

    async def _landed(self, push: PushRun, entries: Sequence[OutboxEntry]) -> None:
        """Done, with the hub's copies of the levels and the baselines (what we wrote) in the
        same transaction."""
        written = {e.canonical_key: int(e.payload["quantity"]) for e in entries}
        await push.db(
            self.store.outbox.complete,
            push.target,
            "inventory",
            done=[e.id for e in entries],
            field_patches={
                str(e.payload["target_external_id"]): {"available": written[e.canonical_key]}
                for e in entries
            },
            baselines={key: {"available": quantity} for key, quantity in written.items()},
        )
        push.summary.updated += len(entries)

    async def _refresh_levels(self, push: PushRun, item_ids: Sequence[str]) -> None:
        """Re-read levels whose compare failed and adopt what the platform really holds."""
        if push.target_mapper is None:
            raise ConfigError("a stale inventory compare needs the target's inventory mapper")
        fresh = await push.connector.read_inventory(item_ids)
        context = MapContext(
            push.target, push.connector.platform, push.connector.mapping_settings()
        )
        mapper = push.target_mapper(context)
        patches: dict[str, dict[str, Any]] = {}
        for raw in fresh:
            try:
                level = mapper.map(raw)
            except MappingError:
                continue
            patches[level.origin.external_id] = {"available": level.available}
        await push.db(
            self.store.outbox.complete, push.target, "inventory", done=[], field_patches=patches
        )
