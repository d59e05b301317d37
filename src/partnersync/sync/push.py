"""The push engine: hub → platforms, exactly once, never overselling (DESIGN §4, push).

Every push has two halves:

* **plan** (pure reads of the hub): what the target should hold, compared with what the hub
  last saw on the target, gives a list of :class:`PlannedWrite` (each with the field changes a
  ``--dry-run`` shows), records it cannot place (:class:`Problem`, e.g. an unknown SKU) and
  conflicts resolved by the field-ownership policy;
* **send**: each write becomes an outbox row whose idempotency key — derived from (target,
  entity, key, content hash) — is stored *before* the first attempt and reused on every retry.
  A row already ``done`` is never sent again, so running the same push twice writes nothing.
  A write whose answer was lost is checked against the platform before it is repeated.

Inventory: pushed = max(0, floor((available − buffer) × allocation)), as an absolute quantity
with compare-and-set on what we last read; a stale compare re-reads the level and plans again,
never overwriting blindly. A level already equal is not written. An SKU the target does not have
is reported (a dead letter naming the source file and line), never created.

The mass-change guard refuses a plan that would set more than ``max_drastic_share`` of the
target's records to zero stock or cut their price by more than half, unless forced.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from partnersync.clock import Clock, SystemClock
from partnersync.connectors.base import Connector, InventoryWrite
from partnersync.errors import (
    Action,
    ConfigError,
    ConnectorError,
    MappingError,
    PartnersyncError,
)
from partnersync.failpoints import failpoint
from partnersync.mapping.mapper import MapContext, Mapper
from partnersync.mapping.model import Order, Product, Shipment
from partnersync.sync.store import HubRecord, HubStore, OutboxEntry

OWNERS = ("hub", "platform", "newest")
MAX_BATCH = 250  # Shopify's input-array limit; a sensible bound for any batch endpoint
MAX_STALE_ROUNDS = 3
WRITE_ATTEMPTS = 4
WRITE_BACKOFF = 0.5  # seconds, doubled on each further attempt
FAILURES_BEFORE_STOPPING = 3


class MassChangeError(PartnersyncError):
    """A push would change too much of a channel at once; it was stopped before writing."""

    def __init__(self, message: str, plan: PushPlan) -> None:
        super().__init__(message)
        self.plan = plan


@dataclass(frozen=True)
class PushOptions:
    """How to push (from a job in the project file, or CLI flags)."""

    sources: tuple[str, ...] = ()
    dry_run: bool = False
    force: bool = False
    buffer: int = 0
    allocation: Decimal = Decimal(1)
    locations: Mapping[str, str] = field(default_factory=dict)
    max_drastic_share: float = 0.2
    ownership: Mapping[str, str] = field(default_factory=dict)
    default_owner: str = "hub"

    def owner(self, field_name: str) -> str:
        """Who wins ``field_name`` (``variants[SKU].price`` is owned as ``price``)."""
        base = field_name.rsplit(".", 1)[-1]
        return self.ownership.get(field_name) or self.ownership.get(base) or self.default_owner


@dataclass(frozen=True)
class FieldChange:
    """One field the push would change on the platform."""

    field: str
    current: Any
    new: Any


@dataclass
class PlannedWrite:
    """A write the push would make."""

    key: str
    label: str
    operation: str
    changes: list[FieldChange]
    payload: dict[str, Any]
    source_ref: str | None = None
    drastic: bool = False
    creates: bool = False

    @property
    def idempotency_key(self) -> str:
        """Stable for (operation, key, content): the same write always has the same key."""
        return _digest(self.operation, self.key, self.content_hash)

    @property
    def content_hash(self) -> str:
        """Hash of the payload."""
        return _digest(orjson.dumps(self.payload, option=orjson.OPT_SORT_KEYS, default=str))


@dataclass(frozen=True)
class Problem:
    """A hub record the push cannot place on the target."""

    key: str
    reason: str
    source_ref: str | None
    payload: Any


@dataclass(frozen=True)
class Conflict:
    """A field changed on both sides since the last sync, and who won."""

    key: str
    field: str
    hub: Any
    platform: Any
    baseline: Any
    policy: str
    winner: str


@dataclass
class PushPlan:
    """What a push would do."""

    target: str
    entity: str
    writes: list[PlannedWrite] = field(default_factory=list)
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    target_records: int = 0
    adoptions: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """Hub records already equal on the target, to bind with a baseline when not a dry run."""

    @property
    def drastic(self) -> int:
        """Writes the mass-change guard counts."""
        return sum(1 for w in self.writes if w.drastic)


@dataclass
class PushSummary:
    """How a push ended."""

    run_id: int
    target: str
    entity: str
    status: str
    plan: PushPlan
    created: int = 0
    updated: int = 0
    dead_lettered: int = 0
    requests: int = 0
    error: str | None = None


def _digest(*parts: str | bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else part.encode())
        hasher.update(b"\x00")
    return hasher.hexdigest()[:32]


def pushed_quantity(available: int, buffer: int, allocation: Decimal) -> int:
    """max(0, floor((available − buffer) × allocation)) — exact, no float rounding."""
    return max(0, math.floor((Decimal(available) - buffer) * allocation))


# -- planning ---------------------------------------------------------------------------------
def plan_inventory(store: HubStore, target: str, options: PushOptions) -> PushPlan:
    """Target levels to set from the sources' stock."""
    plan = PushPlan(target, "inventory")
    stock: dict[tuple[str, str], int] = {}
    refs: dict[tuple[str, str], str | None] = {}
    for source in options.sources:
        for record in store.records_of(source, "inventory"):
            level = record.data
            location = str(level.get("location_name") or level.get("location_id") or "")
            where = (str(level["sku"]), options.locations.get(location, location))
            stock[where] = stock.get(where, 0) + int(level["available"])
            refs.setdefault(where, record.source_ref)
    levels = store.records_of(target, "inventory")
    plan.target_records = len(levels)
    by_id = {(r.data["sku"], r.data["location_id"]): r for r in levels}
    by_name = {(r.data["sku"], r.data.get("location_name")): r for r in levels}
    known_skus = {r.data["sku"] for r in levels}
    for (sku, location), available in sorted(stock.items()):
        found = by_id.get((sku, location)) or by_name.get((sku, location))
        if found is None:
            reason = (
                f"unknown SKU {sku!r} on {target}: not created, only reported"
                if sku not in known_skus
                else f"SKU {sku!r} is not stocked at location {location!r} on {target}"
            )
            plan.problems.append(
                Problem(
                    f"{sku}@{location}",
                    reason,
                    refs[(sku, location)],
                    {"sku": sku, "location": location},
                )
            )
            continue
        record = found
        level = record.data
        desired = pushed_quantity(available, options.buffer, options.allocation)
        current = int(level["available"])
        if desired == current:
            plan.unchanged += 1
            continue
        plan.writes.append(
            PlannedWrite(
                key=f"{sku}@{level['location_id']}",
                label=f"{sku} @ {level.get('location_name') or level['location_id']}",
                operation="set_inventory",
                changes=[FieldChange("available", current, desired)],
                payload={
                    "inventory_item_id": level["inventory_item_id"],
                    "location_id": level["location_id"],
                    "quantity": desired,
                    "change_from": current,
                    "target_external_id": record.external_id,
                },
                source_ref=refs[(sku, location)],
                drastic=desired == 0 and current > 0,
            )
        )
    return plan


def product_fields(product: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a product push compares, flat: ``title``, ``variants[SKU].price``, …"""
    fields: dict[str, Any] = {
        name: product.get(name)
        for name in ("title", "status", "vendor", "product_type", "tags", "description_html")
    }
    for variant in product.get("variants") or []:
        sku = variant.get("sku")
        if not sku:
            continue
        price = variant.get("price") or {}
        compare = variant.get("compare_at_price") or {}
        fields[f"variants[{sku}].price"] = _amount(price.get("amount")) if price else None
        fields[f"variants[{sku}].compare_at_price"] = (
            _amount(compare.get("amount")) if compare else None
        )
        fields[f"variants[{sku}].barcode"] = variant.get("barcode")
    return fields


def _amount(value: Any) -> str:
    """A money amount in one spelling (``12.50`` and ``12.5`` compare equal)."""
    return format(Decimal(str(value)).normalize(), "f")


def _apply_fields(
    product: dict[str, Any], values: Mapping[str, Any], hub: Mapping[str, Any]
) -> dict[str, Any]:
    """The platform's product with the chosen values; variants only the hub has are added."""
    merged = dict(product)
    variants = [dict(v) for v in product.get("variants") or []]
    present = {v.get("sku") for v in variants}
    for variant in hub.get("variants") or []:
        if variant.get("sku") and variant["sku"] not in present:
            variants.append({**variant, "position": len(variants) + 1})
    for name, value in values.items():
        if not name.startswith("variants["):
            merged[name] = value
            continue
        sku, _, attribute = name[len("variants[") :].partition("].")
        for variant in variants:
            if variant.get("sku") != sku:
                continue
            if attribute in ("price", "compare_at_price"):
                currency = (variant.get("price") or {}).get("currency", "USD")
                variant[attribute] = (
                    None if value is None else {"amount": value, "currency": currency}
                )
            else:
                variant[attribute] = value
    merged["variants"] = variants
    return merged


def plan_products(store: HubStore, target: str, options: PushOptions) -> PushPlan:
    """Create or update the target's products from the sources, field by field."""
    plan = PushPlan(target, "products")
    copies = store.records_of(target, "products")
    plan.target_records = len(copies)
    by_id = {r.external_id: r for r in copies}
    by_handle = {r.data.get("handle"): r for r in copies if r.data.get("handle")}
    bindings = store.bindings(target, "products")
    baselines = store.baselines(target, "products")
    for source in options.sources:
        for record in store.records_of(source, "products"):
            key = record.canonical_key
            bound = bindings.get(key)
            copy = by_id.get(bound) if bound else by_handle.get(record.data.get("handle"))
            _plan_product(plan, options, record, copy, bound, baselines.get(key))
    return plan


def _product_write(
    record: HubRecord,
    changes: list[FieldChange],
    payload: dict[str, Any],
    *,
    creates: bool = False,
    drastic: bool = False,
) -> PlannedWrite:
    return PlannedWrite(
        key=record.canonical_key,
        label=str(record.data.get("handle") or record.canonical_key),
        operation="upsert_product",
        changes=changes,
        payload=payload,
        source_ref=record.source_ref,
        creates=creates,
        drastic=drastic,
    )


def _winner(
    plan: PushPlan,
    options: PushOptions,
    key: str,
    name: str,
    values: tuple[Any, Any],
    baseline: Mapping[str, Any] | None,
    hub_is_newer: bool,
) -> str:
    """Who keeps a field whose hub and platform values differ (recording a conflict)."""
    hub_value, platform_value = values
    base = baseline.get(name) if baseline is not None else None
    hub_changed = baseline is None or hub_value != base
    platform_changed = baseline is not None and platform_value != base
    if not hub_changed:
        return "platform"
    if not platform_changed:
        # Only the hub changed it, or nothing is known yet and the owner decides.
        return "hub" if baseline is not None or options.owner(name) != "platform" else "platform"
    policy = options.owner(name)
    winner = policy if policy != "newest" else ("hub" if hub_is_newer else "platform")
    plan.conflicts.append(Conflict(key, name, hub_value, platform_value, base, policy, winner))
    return winner


def _plan_product(
    plan: PushPlan,
    options: PushOptions,
    record: HubRecord,
    copy: HubRecord | None,
    bound: str | None,
    baseline: Mapping[str, Any] | None,
) -> None:
    """Plan one hub product against the target's copy (if known) and the last baseline."""
    hub = record.data
    key = record.canonical_key
    # A value the source does not have (empty) leaves the platform's value alone.
    desired = {k: v for k, v in product_fields(hub).items() if v not in (None, "", [])}
    if copy is None:
        # Not seen on the target since our last write: what we wrote (the baseline) is the
        # best knowledge of what it holds.
        known = baseline if bound and baseline is not None else {}
        unknown = [
            FieldChange(name, known.get(name), value)
            for name, value in desired.items()
            if name not in known or known[name] != value
        ]
        if not unknown:
            plan.unchanged += 1
            return
        payload = {"product": hub, "external_id": bound, "variant_ids": {}, "fields": desired}
        plan.writes.append(_product_write(record, unknown, payload, creates=bound is None))
        return
    current = product_fields(copy.data)
    hub_is_newer = str(hub.get("updated_at")) >= str(copy.data.get("updated_at"))
    final = dict(current)
    changes: list[FieldChange] = []
    for name, hub_value in desired.items():
        platform_value = current.get(name)
        if name in current and hub_value == platform_value:
            continue
        if name in current:
            pair = (hub_value, platform_value)
            if _winner(plan, options, key, name, pair, baseline, hub_is_newer) != "hub":
                continue
        final[name] = hub_value
        changes.append(FieldChange(name, platform_value, hub_value))
    if not changes:
        plan.unchanged += 1
        if baseline is None or bound is None:
            plan.adoptions.append((key, copy.external_id, final))
        return
    merged = _apply_fields(
        {**copy.data, "handle": copy.data.get("handle") or hub.get("handle")}, final, hub
    )
    variant_ids = {
        v["sku"]: v["external_id"] for v in copy.data.get("variants") or [] if v.get("sku")
    }
    payload = {
        "product": merged,
        "external_id": copy.external_id,
        "variant_ids": variant_ids,
        "fields": final,
    }
    drastic = any(_halved(c.field, c.current, c.new) for c in changes)
    plan.writes.append(_product_write(record, changes, payload, drastic=drastic))


def _halved(name: str, old: Any, new: Any) -> bool:
    if not name.endswith(".price") or old is None or new is None:
        return False
    return Decimal(str(new)) < Decimal(str(old)) / 2


def plan_fulfillments(store: HubStore, target: str, options: PushOptions) -> PushPlan:
    """Tracking for the target's orders from the warehouse's shipments."""
    plan = PushPlan(target, "fulfillments")
    orders = store.records_of(target, "orders")
    plan.target_records = len(orders)
    by_ref: dict[str, HubRecord] = {}
    for order in orders:
        by_ref[str(order.data.get("number"))] = order
        by_ref[order.external_id] = order
    for source in options.sources:
        for record in store.records_of(source, "fulfillments"):
            shipment = record.data
            if shipment.get("channel") and shipment["channel"] != target:
                continue
            matched = by_ref.get(str(shipment["order_ref"]))
            if matched is None:
                plan.problems.append(
                    Problem(
                        record.external_id,
                        f"order {shipment['order_ref']!r} is not a known {target} order",
                        record.source_ref,
                        shipment,
                    )
                )
                continue
            order = matched
            tracked = {f.get("tracking_number") for f in order.data.get("fulfillments") or []}
            if shipment["tracking_number"] in tracked:
                plan.unchanged += 1
                continue
            plan.writes.append(
                PlannedWrite(
                    key=f"{order.canonical_key}#{shipment['tracking_number']}",
                    label=f"{order.data.get('number')} ← {shipment['tracking_number']}",
                    operation="create_fulfillment",
                    changes=[FieldChange("tracking", None, shipment["tracking_number"])],
                    payload={"order_external_id": order.external_id, "shipment": shipment},
                    source_ref=record.source_ref,
                    creates=True,
                )
            )
    return plan


def plan_order_export(store: HubStore, target: str, options: PushOptions) -> PushPlan:
    """Orders of the source channels not yet delivered to ``target`` (each order once)."""
    plan = PushPlan(target, "orders")
    done = store.done_outbox_keys(target, "orders")
    for source in options.sources:
        for record in store.records_of(source, "orders"):
            if record.canonical_key in done:
                plan.unchanged += 1
                continue
            order = record.data
            plan.writes.append(
                PlannedWrite(
                    key=record.canonical_key,
                    label=f"{source} {order.get('number')}",
                    operation="export_order",
                    changes=[FieldChange("export", None, order.get("number"))],
                    payload={"channel": source, "external_id": record.external_id, **order},
                    creates=True,
                )
            )
    return plan


PLANNERS: dict[str, Callable[[HubStore, str, PushOptions], PushPlan]] = {
    "inventory": plan_inventory,
    "products": plan_products,
    "fulfillments": plan_fulfillments,
    "orders": plan_order_export,
}
"""Entity → planner."""

TARGET_STATE = {
    "inventory": "inventory",
    "products": "products",
    "fulfillments": "orders",
    "orders": None,
}
"""Entity pushed → entity pulled from the target to know its current state (None: nothing)."""


def once_key(plan_write: PlannedWrite) -> str:
    """Order exports are keyed by the order alone: each order goes out once, whatever changes."""
    return _digest("export_order", plan_write.key)


# -- sending ----------------------------------------------------------------------------------
class PushEngine:
    """Runs pushes from one hub store."""

    def __init__(self, store: HubStore, *, clock: Clock | None = None) -> None:
        self.store = store
        self.clock = clock or SystemClock()

    def plan(self, target: str, entity: str, options: PushOptions) -> PushPlan:
        """What a push would do now (reads only)."""
        planner = PLANNERS.get(entity)
        if planner is None:
            raise ConfigError(f"cannot push {entity!r}; pushable: {sorted(PLANNERS)}")
        return planner(self.store, target, options)

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
    ) -> PushSummary:
        """Plan, guard, then send; a dry run stops after the plan and writes nothing."""
        target = connector.account.name
        capability = connector.capabilities.entities.get(entity)
        if capability is None or not capability.push:
            raise ConfigError(f"the {connector.platform} connector cannot receive {entity}")
        plan = self.plan(target, entity, options)
        self.guard(plan, options)
        run_id = self.store.start_run(
            account=target,
            entity=entity,
            direction="push",
            mode="dry-run" if options.dry_run else "push",
            since=None,
            cursor_before=None,
        )
        summary = PushSummary(run_id, target, entity, "succeeded", plan)
        self.store.record_conflicts(run_id, target, entity, plan.conflicts)
        self.store.add_run_counts(
            run_id,
            unchanged=plan.unchanged,
            skipped=len(plan.problems),
            conflicts=len(plan.conflicts),
        )
        if options.dry_run:
            self.store.finish_run(run_id, status="succeeded", cursor_after=None)
            return summary
        for key, external_id, fields in plan.adoptions:
            self.store.bind(target, entity, key, external_id)
            self.store.set_baseline(target, entity, key, fields)
        for problem in plan.problems:
            self.store.add_problem(
                run_id=run_id,
                target=target,
                entity=entity,
                key=problem.key,
                reason=problem.reason,
                payload=problem.payload,
                source_ref=problem.source_ref,
            )
        before = connector.requests_sent
        try:
            await connector.prepare()
            if entity == "inventory":
                await self._send_inventory(connector, plan, options, summary, target_mapper)
            elif entity == "orders":
                await self._send_order_export(connector, plan, summary)
            else:
                await self._send_each(connector, plan, summary)
        except PartnersyncError as exc:
            summary.status, summary.error = "failed", f"{type(exc).__name__}: {exc}"
        summary.requests = connector.requests_sent - before
        if summary.status != "failed" and (summary.dead_lettered or plan.problems):
            summary.status = "partial"
        self.store.add_run_counts(
            run_id,
            created=summary.created,
            updated=summary.updated,
            dead_lettered=summary.dead_lettered,
            requests=summary.requests,
        )
        self.store.finish_run(run_id, status=summary.status, cursor_after=None, error=summary.error)
        return summary

    def _enqueue(
        self, run_id: int, plan: PushPlan, writes: Sequence[PlannedWrite]
    ) -> list[OutboxEntry]:
        rows = [
            (
                w.key,
                w.operation,
                once_key(w) if w.operation == "export_order" else w.idempotency_key,
                w.content_hash,
                {**w.payload, "_creates": w.creates},
                w.source_ref,
            )
            for w in writes
        ]
        return self.store.enqueue(
            run_id=run_id, target=plan.target, entity=plan.entity, writes=rows
        )

    def _dead(
        self,
        summary: PushSummary,
        entries: Iterable[OutboxEntry],
        exc: BaseException,
        operation: str,
    ) -> None:
        for entry in entries:
            self.store.mark_outbox([entry.id], "dead", error=str(exc))
            self.store.add_push_dead_letter(
                run_id=summary.run_id,
                target=summary.target,
                entity=summary.entity,
                entry=entry,
                reason=str(exc),
                error_class=type(exc).__name__,
                operation=operation,
            )
            summary.dead_lettered += 1

    # inventory: batched, compare-and-set, re-read on stale ------------------------------------
    async def _send_inventory(
        self,
        connector: Connector,
        plan: PushPlan,
        options: PushOptions,
        summary: PushSummary,
        target_mapper: type[Mapper[Any]] | None,
    ) -> None:
        for _ in range(MAX_STALE_ROUNDS):
            entries = [
                e
                for e in self._enqueue(summary.run_id, plan, plan.writes)
                if e.status in ("pending", "sending")
            ]
            stale_items: list[str] = []
            for start in range(0, len(entries), MAX_BATCH):
                batch = entries[start : start + MAX_BATCH]
                batch_key = _digest(*sorted(e.idempotency_key for e in batch))
                self.store.mark_outbox(
                    [e.id for e in batch], "sending", batch_key=batch_key, attempt=True
                )
                writes = [
                    InventoryWrite(
                        e.payload["inventory_item_id"],
                        e.payload["location_id"],
                        int(e.payload["quantity"]),
                        e.payload["change_from"],
                    )
                    for e in batch
                ]
                try:
                    outcome = await connector.set_inventory(writes, batch_key)
                except ConnectorError as exc:
                    if exc.action is Action.RETRY:
                        raise  # left 'sending' under its key: the next run repeats it safely
                    self._dead(summary, batch, exc, "set_inventory")
                    continue
                if outcome.applied:
                    self.store.mark_outbox([e.id for e in batch], "done")
                    summary.updated += len(batch)
                    self._patch_levels(plan.target, batch)
                elif outcome.stale:
                    self.store.mark_outbox([e.id for e in batch], "stale")
                    stale_items += [e.payload["inventory_item_id"] for e in batch]
                else:
                    self._dead(
                        summary, batch, ConnectorError("; ".join(outcome.errors)), "set_inventory"
                    )
            if not stale_items:
                return
            await self._refresh_levels(
                connector, plan.target, sorted(set(stale_items)), target_mapper
            )
            plan_again = plan_inventory(self.store, plan.target, options)
            plan.writes = plan_again.writes
        raise ConnectorError(f"inventory on {plan.target} kept changing under us; try again later")

    def _patch_levels(self, target: str, batch: Sequence[OutboxEntry]) -> None:
        wanted = {str(e.payload["target_external_id"]): int(e.payload["quantity"]) for e in batch}
        copies = self.store.records_of(target, "inventory", external_ids=list(wanted))
        self.store.patch_records(
            target,
            "inventory",
            {r.external_id: {**r.data, "available": wanted[r.external_id]} for r in copies},
        )

    async def _refresh_levels(
        self,
        connector: Connector,
        target: str,
        item_ids: Sequence[str],
        mapper_class: type[Mapper[Any]] | None,
    ) -> None:
        """Re-read levels whose compare failed and adopt what the platform really holds."""
        if mapper_class is None:
            raise ConfigError("a stale inventory compare needs the target's inventory mapper")
        fresh = await connector.read_inventory(item_ids)
        copies = {r.external_id: r for r in self.store.records_of(target, "inventory")}
        mapper = mapper_class(MapContext(target, connector.platform, connector.mapping_settings()))
        for raw in fresh:
            try:
                level = mapper.map(raw)
            except MappingError:
                continue
            copy = copies.get(level.origin.external_id)
            if copy is not None:
                self.store.patch_record(
                    target,
                    "inventory",
                    copy.external_id,
                    {**copy.data, "available": level.available},
                )

    # products and fulfilments: one write each, verified after a lost answer -----------------
    async def _send_each(self, connector: Connector, plan: PushPlan, summary: PushSummary) -> None:
        operation = "upsert_product" if plan.entity == "products" else "create_fulfillment"
        failing_in_a_row = 0
        for entry in self._enqueue(summary.run_id, plan, plan.writes):
            if entry.status not in ("pending", "sending"):
                continue
            try:
                await self._deliver(connector, plan, summary, entry)
                failing_in_a_row = 0
            except ConnectorError as exc:
                self._dead(summary, [entry], exc, operation)
                failing_in_a_row = failing_in_a_row + 1 if exc.action is Action.RETRY else 0
                if failing_in_a_row >= FAILURES_BEFORE_STOPPING:
                    # The platform looks down: stop instead of dead-lettering everything.
                    raise

    async def _deliver(
        self, connector: Connector, plan: PushPlan, summary: PushSummary, entry: OutboxEntry
    ) -> None:
        verify_first = entry.status == "sending"  # an earlier attempt may have landed
        self.store.mark_outbox([entry.id], "sending", attempt=True)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                if plan.entity == "products":
                    result = await self._deliver_product(
                        connector, plan, entry, verify_first or attempt > 0
                    )
                else:
                    result = await self._deliver_fulfillment(
                        connector, plan, entry, verify_first or attempt > 0
                    )
            except ConnectorError as exc:
                # A lost answer or a server error may hide an applied write: wait, then look
                # at the platform before writing again.
                if exc.action is not Action.RETRY:
                    raise
                if attempt == WRITE_ATTEMPTS - 1:
                    landed = await self._landed(connector, plan, entry)
                    if landed is None:
                        raise
                    result = landed
                else:
                    self.store.mark_outbox([entry.id], "sending", error=str(exc), attempt=True)
                    await self.clock.sleep(WRITE_BACKOFF * 2**attempt)
                    continue
            self.store.mark_outbox([entry.id], "done", result=result)
            if entry.payload.get("_creates"):
                summary.created += 1
            else:
                summary.updated += 1
            return

    async def _landed(self, connector: Connector, plan: PushPlan, entry: OutboxEntry) -> str | None:
        """After the last lost answer: did a create land after all? (Updates cannot tell.)"""
        payload = entry.payload
        if plan.entity == "products":
            handle = payload["product"].get("handle")
            if payload.get("external_id") or not handle:
                return None
            found = await connector.find_product(handle)
            if found is None:
                return None
            self.store.bind(plan.target, "products", entry.canonical_key, found.external_id)
            self.store.set_baseline(plan.target, "products", entry.canonical_key, payload["fields"])
            return found.external_id
        shipment = Shipment.model_validate(payload["shipment"])
        order_id = str(payload["order_external_id"])
        fulfillment = await connector.find_fulfillment(order_id, shipment.tracking_number)
        if fulfillment is not None:
            self._note_fulfillment(plan.target, order_id, fulfillment, shipment)
        return fulfillment

    async def _deliver_product(
        self, connector: Connector, plan: PushPlan, entry: OutboxEntry, verify: bool
    ) -> str:
        payload = entry.payload
        product = Product.model_validate(payload["product"])
        external_id = payload.get("external_id")
        variant_ids = dict(payload.get("variant_ids") or {})
        if verify and not external_id and product.handle:
            found = await connector.find_product(product.handle)
            if found is not None:  # the create landed before its answer was lost
                external_id = found.external_id
                variant_ids = {**found.variant_ids, **variant_ids}
        outcome = await connector.upsert_product(product, external_id, variant_ids)
        self.store.bind(plan.target, "products", entry.canonical_key, outcome.external_id)
        self.store.set_baseline(plan.target, "products", entry.canonical_key, payload["fields"])
        return outcome.external_id

    async def _deliver_fulfillment(
        self, connector: Connector, plan: PushPlan, entry: OutboxEntry, verify: bool
    ) -> str:
        payload = entry.payload
        shipment = Shipment.model_validate(payload["shipment"])
        order_id = str(payload["order_external_id"])
        if verify:
            found = await connector.find_fulfillment(order_id, shipment.tracking_number)
            if found is not None:
                self._note_fulfillment(plan.target, order_id, found, shipment)
                return found
        created = await connector.create_fulfillment(order_id, shipment)
        self._note_fulfillment(plan.target, order_id, created, shipment)
        return created

    def _note_fulfillment(
        self, target: str, order_id: str, fulfillment_id: str, shipment: Shipment
    ) -> None:
        """Record the new tracking on the hub's copy of the order, so it is not sent again."""
        record = self.store.find_record(target, "orders", order_id)
        if record is None:
            return
        order = Order.model_validate(record["data"])
        if shipment.tracking_number in {f.tracking_number for f in order.fulfillments}:
            return
        data = dict(record["data"])
        data["fulfillments"] = [
            *data.get("fulfillments", []),
            {
                "external_id": fulfillment_id,
                "status": "success",
                "carrier": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "tracking_url": shipment.tracking_url,
                "created_at": None,
            },
        ]
        self.store.patch_record(target, "orders", order_id, data)

    # order exports: one file per run, each order once ---------------------------------------
    async def _send_order_export(
        self, connector: Connector, plan: PushPlan, summary: PushSummary
    ) -> None:
        self._enqueue(summary.run_id, plan, plan.writes)
        open_rows = self.store.open_outbox(plan.target, "orders")
        batches: dict[str | None, list[OutboxEntry]] = {}
        for entry in open_rows:
            batches.setdefault(entry.batch_key, []).append(entry)
        fresh = batches.pop(None, [])
        if fresh:
            key = _digest(*sorted(e.idempotency_key for e in fresh))
            self.store.mark_outbox([e.id for e in fresh], "sending", batch_key=key, attempt=True)
            batches[key] = fresh
        for batch_key, entries in batches.items():
            assert batch_key is not None
            where = connector.find_export(batch_key)  # a crash after writing: do not write twice
            if where is None:
                orders = [{k: v for k, v in e.payload.items() if k != "_creates"} for e in entries]
                where = await connector.write_orders(batch_key, orders)
                failpoint("after_export_write")
            self.store.mark_outbox([e.id for e in entries], "done", result=where)
            summary.created += len(entries)

    async def send_open(
        self, connector: Connector, entity: str, options: PushOptions
    ) -> PushSummary:
        """Send rows left open (e.g. reopened by ``dlq replay``) without planning anew."""
        plan = PushPlan(connector.account.name, entity)
        run_id = self.store.start_run(
            account=plan.target,
            entity=entity,
            direction="push",
            mode="replay",
            since=None,
            cursor_before=None,
        )
        summary = PushSummary(run_id, plan.target, entity, "succeeded", plan)
        rows = self.store.open_outbox(plan.target, entity)
        try:
            await connector.prepare()
            for entry in rows:
                if entity == "inventory":
                    payload = entry.payload
                    outcome = await connector.set_inventory(
                        [
                            InventoryWrite(
                                payload["inventory_item_id"],
                                payload["location_id"],
                                int(payload["quantity"]),
                                payload["change_from"],
                            )
                        ],
                        entry.idempotency_key,
                    )
                    if outcome.applied:
                        self.store.mark_outbox([entry.id], "done")
                        summary.updated += 1
                    else:
                        self._dead(
                            summary,
                            [entry],
                            ConnectorError("; ".join(outcome.errors) or "stale"),
                            "set_inventory",
                        )
                elif entity == "orders":
                    await self._send_order_export(connector, plan, summary)
                    break
                else:
                    try:
                        await self._deliver(connector, plan, summary, entry)
                    except ConnectorError as exc:
                        if exc.action is Action.RETRY:
                            raise
                        self._dead(summary, [entry], exc, entity)
        except PartnersyncError as exc:
            summary.status, summary.error = "failed", f"{type(exc).__name__}: {exc}"
        if summary.status != "failed" and summary.dead_lettered:
            summary.status = "partial"
        self.store.add_run_counts(
            run_id,
            created=summary.created,
            updated=summary.updated,
            dead_lettered=summary.dead_lettered,
        )
        self.store.finish_run(run_id, status=summary.status, cursor_after=None, error=summary.error)
        return summary
