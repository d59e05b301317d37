"""Product exporter: the sources' catalogue → the target's products, field by field.

Per field the planner compares three values: the hub's, the platform's (the target's copy in the
hub, refreshed before the push) and the **baseline** — what both sides held when they last
agreed, kept per side (``{"hub": …, "platform": …}``) because after a conflict the platform won,
the two differ and must both be remembered. A field only one side changed since the baseline is
that side's; a field both changed is a conflict, settled by the ownership policy and recorded.

Safety rules a merchant relies on:

* a push never writes over what it has not read: the target's products must have been pulled,
  and a product bound to the target but missing from its copy is reported, not re-created;
* a value the source does not have (an empty column) leaves the platform's value alone;
* a price in another currency than the target's is reported for the record, never written;
* a variant deleted on the platform, unchanged in the hub since, is not re-created;
* several hub records with one handle (a product re-created on the source) are one product:
  the newest wins, so the target does not flip between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from partnersync.errors import Action, ConfigError, ConnectorError
from partnersync.mapping.export import SELF
from partnersync.mapping.mapper import MapContext
from partnersync.mapping.model import Product
from partnersync.sync.push.engine import Exporter, PushRun, exporter
from partnersync.sync.push.plan import (
    Conflict,
    FieldChange,
    PlannedWrite,
    Problem,
    PushOptions,
    PushPlan,
)
from partnersync.sync.store import HubRecord, OutboxEntry

OPERATION = "upsert_product"
WRITE_ATTEMPTS = 4
WRITE_BACKOFF = 0.5  # seconds, doubled on each further attempt
PRODUCT_FIELDS = ("title", "status", "vendor", "product_type", "tags", "description_html")


def product_fields(product: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a product push compares, flat: ``title``, ``variants[SKU].price``, …"""
    fields: dict[str, Any] = {name: product.get(name) for name in PRODUCT_FIELDS}
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


def _variant_skus(fields: Mapping[str, Any]) -> set[str]:
    return {
        name[len("variants[") :].partition("].")[0]
        for name in fields
        if name.startswith("variants[")
    }


def _currencies(product: Mapping[str, Any]) -> set[str]:
    found = set()
    for variant in product.get("variants") or []:
        for money in (variant.get("price"), variant.get("compare_at_price")):
            if isinstance(money, dict) and money.get("currency"):
                found.add(str(money["currency"]))
    return found


def split_baseline(
    baseline: Mapping[str, Any] | None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(hub side, platform side) of a stored baseline (older flat baselines count for both)."""
    if baseline is None:
        return None
    if set(baseline) == {"hub", "platform"}:
        return dict(baseline["hub"]), dict(baseline["platform"])
    return dict(baseline), dict(baseline)


def _apply_fields(
    product: dict[str, Any],
    values: Mapping[str, Any],
    hub: Mapping[str, Any],
    leave_out: set[str],
) -> dict[str, Any]:
    """The platform's product with the chosen values; variants only the hub has are added
    (except ``leave_out``: variants the platform deleted)."""
    merged = dict(product)
    variants = [dict(v) for v in product.get("variants") or []]
    present = {v.get("sku") for v in variants}
    for variant in hub.get("variants") or []:
        sku = variant.get("sku")
        if sku and sku not in present and sku not in leave_out:
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


def _halved(name: str, old: Any, new: Any) -> bool:
    if not name.endswith(".price") or old is None or new is None:
        return False
    return Decimal(str(new)) < Decimal(str(old)) / 2


class _ProductPlanner:
    """Plans one target's products (state shared across the records of one plan)."""

    def __init__(
        self, plan: PushPlan, options: PushOptions, currency: str | None, can_create: bool
    ) -> None:
        self.plan = plan
        self.options = options
        self.currency = currency
        self.can_create = can_create

    def winner(
        self,
        key: str,
        name: str,
        values: tuple[Any, Any],
        sides: tuple[dict[str, Any], dict[str, Any]] | None,
        hub_is_newer: bool,
    ) -> str:
        """Who keeps a field whose hub and platform values differ (recording a conflict)."""
        hub_value, platform_value = values
        base_hub, base_platform = sides or ({}, {})
        hub_changed = sides is None or hub_value != base_hub.get(name)
        platform_changed = sides is not None and platform_value != base_platform.get(name)
        if not hub_changed:
            return "platform"
        if not platform_changed:
            # Only the hub changed it, or nothing is known yet and the owner decides.
            owner = self.options.owner(name)
            return "hub" if sides is not None or owner != "platform" else "platform"
        policy = self.options.owner(name)
        winner = policy if policy != "newest" else ("hub" if hub_is_newer else "platform")
        base = base_hub.get(name) if sides is not None else None
        self.plan.conflicts.append(
            Conflict(key, name, hub_value, platform_value, base, policy, winner)
        )
        return winner

    def plan_record(
        self,
        record: HubRecord,
        copy: HubRecord | None,
        bound: str | None,
        baseline: Mapping[str, Any] | None,
    ) -> None:
        """Plan one hub product against the target's copy and the last agreement."""
        hub = record.data
        key = record.canonical_key
        label = str(hub.get("handle") or key)
        target = self.plan.target
        currency = self._target_currency(copy)
        wrong = _currencies(hub) - {currency} if currency else set()
        if wrong:
            self.plan.problems.append(
                Problem(
                    key,
                    f"{label}: prices are in {', '.join(sorted(wrong))} but {target} sells in "
                    f"{currency}; not written (convert the prices in the "
                    "source, or push this catalogue to a shop in that currency)",
                    record.source_ref,
                    {"handle": hub.get("handle")},
                )
            )
            return
        desired = {k: v for k, v in product_fields(hub).items() if v not in (None, "", [])}
        if copy is None:
            if bound is not None:
                self.plan.problems.append(
                    Problem(
                        key,
                        f"{label} was pushed to {target} as {bound}, which {target} no longer "
                        "has (deleted there): not re-created",
                        record.source_ref,
                        {"handle": hub.get("handle"), "external_id": bound},
                    )
                )
                return
            if not self.can_create:
                self.plan.problems.append(
                    Problem(
                        key,
                        f"{label} is not on {target}, and its connector can only update "
                        "products there: not created",
                        record.source_ref,
                        {"handle": hub.get("handle")},
                    )
                )
                return
            changes = [FieldChange(name, None, value) for name, value in desired.items()]
            payload = {
                "product": hub,
                "external_id": None,
                "variant_ids": {},
                "baseline": {"hub": desired, "platform": desired},
            }
            self.plan.writes.append(_product_write(record, changes, payload, creates=True))
            return
        self._plan_update(record, copy, bound, split_baseline(baseline), desired)

    def _target_currency(self, copy: HubRecord | None) -> str | None:
        if copy is not None:
            found = _currencies(copy.data)
            if len(found) == 1:
                return found.pop()
        return self.currency

    def _plan_update(
        self,
        record: HubRecord,
        copy: HubRecord,
        bound: str | None,
        sides: tuple[dict[str, Any], dict[str, Any]] | None,
        desired: dict[str, Any],
    ) -> None:
        hub = record.data
        key = record.canonical_key
        current = product_fields(copy.data)
        hub_is_newer = str(hub.get("updated_at")) >= str(copy.data.get("updated_at"))
        leave_out = self._deleted_on_platform(key, desired, current, sides, hub_is_newer)
        desired = {
            name: value
            for name, value in desired.items()
            if not name.startswith("variants[") or _variant_skus({name: value}) - leave_out
        }
        final = dict(current)
        changes: list[FieldChange] = []
        for name, hub_value in desired.items():
            platform_value = current.get(name)
            if name in current and hub_value == platform_value:
                continue
            if name in current:
                pair = (hub_value, platform_value)
                if self.winner(key, name, pair, sides, hub_is_newer) != "hub":
                    continue
            final[name] = hub_value
            changes.append(FieldChange(name, platform_value, hub_value))
        agreed = {"hub": desired, "platform": final}
        if not changes:
            self.plan.unchanged += 1
            if bound is None or sides is None or sides != (desired, final):
                self.plan.adoptions.append((key, copy.external_id, agreed))
            return
        merged = _apply_fields(
            {**copy.data, "handle": copy.data.get("handle") or hub.get("handle")},
            final,
            hub,
            leave_out,
        )
        variant_ids = {
            v["sku"]: v["external_id"] for v in copy.data.get("variants") or [] if v.get("sku")
        }
        payload = {
            "product": merged,
            "external_id": copy.external_id,
            "variant_ids": variant_ids,
            "baseline": agreed,
        }
        drastic = any(_halved(c.field, c.current, c.new) for c in changes)
        self.plan.writes.append(_product_write(record, changes, payload, drastic=drastic))

    def _deleted_on_platform(
        self,
        key: str,
        desired: Mapping[str, Any],
        current: Mapping[str, Any],
        sides: tuple[dict[str, Any], dict[str, Any]] | None,
        hub_is_newer: bool,
    ) -> set[str]:
        """SKUs agreed before and gone from the platform now, which stay gone: the platform
        deleted them alone, or won the conflict when the hub changed them too."""
        if sides is None:
            return set()
        base_hub, base_platform = sides
        gone = _variant_skus(base_platform) - _variant_skus(current)
        leave_out = set()
        for sku in sorted(gone):
            mine = {n: v for n, v in desired.items() if n.startswith(f"variants[{sku}].")}
            if not mine:
                continue
            if all(base_hub.get(n) == v for n, v in mine.items()):
                leave_out.add(sku)  # only the platform changed it: deleted stays deleted
                continue
            # Changed in the hub, deleted on the platform: a conflict for the policy.
            name = f"variants[{sku}]"
            policy = self.options.owner(name)
            winner = policy if policy != "newest" else ("hub" if hub_is_newer else "platform")
            self.plan.conflicts.append(
                Conflict(key, name, "changed", "deleted", "present", policy, winner)
            )
            if winner != "hub":
                leave_out.add(sku)
        return leave_out


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
        operation=OPERATION,
        changes=changes,
        payload=payload,
        source_ref=record.source_ref,
        creates=creates,
        drastic=drastic,
    )


@exporter
class ProductExporter(Exporter):
    """Products, one write each, verified after a lost answer."""

    entity = "products"
    reads = "products"

    def plan(self, target: str, options: PushOptions, settings: Mapping[str, Any]) -> PushPlan:
        """Create or update the target's products from the sources, field by field."""
        plan = PushPlan(target, "products")
        copies = self.store.records.of(target, "products")
        plan.target_records = len(copies)
        by_id = {r.external_id: r for r in copies}
        by_handle = {r.data.get("handle"): r for r in copies if r.data.get("handle")}
        bindings = self.store.bindings.of(target, "products")
        baselines = self.store.bindings.baselines(target, "products")
        currency = settings.get("currency")
        planner = _ProductPlanner(
            plan, options, str(currency) if currency else None, "create" in self.writer.verbs
        )
        for record in self._source_products(options):
            key = record.canonical_key
            bound = bindings.get(key)
            copy = by_id.get(bound) if bound else by_handle.get(record.data.get("handle"))
            planner.plan_record(record, copy, bound, baselines.get(key))
        return plan

    def _source_products(self, options: PushOptions) -> list[HubRecord]:
        """One hub record per handle: the first source listed wins; within a source the
        newest record (a product deleted and re-created keeps its handle)."""
        chosen: dict[str, HubRecord] = {}
        unnamed: list[HubRecord] = []
        for source in options.sources:
            mine: dict[str, HubRecord] = {}
            for record in self.store.records.of(source, "products"):
                handle = record.data.get("handle")
                if not handle:
                    unnamed.append(record)
                    continue
                held = mine.get(handle)
                if held is None or str(record.data.get("updated_at")) >= str(
                    held.data.get("updated_at")
                ):
                    mine[handle] = record
            for handle, record in mine.items():
                chosen.setdefault(handle, record)
        return [*chosen.values(), *unnamed]

    async def send(self, push: PushRun) -> None:
        """One write per product, verified after a lost answer."""
        await push.send_each(lambda entry: self._deliver(push, entry), OPERATION)

    async def _deliver(self, push: PushRun, entry: OutboxEntry) -> None:
        verify_first = entry.status == "sending"  # an earlier attempt may have landed
        await push.db(self.store.outbox.mark, [entry.id], "sending", attempt=True)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                external_id = await self._write(push, entry, verify_first or attempt > 0)
            except ConnectorError as exc:
                # A lost answer or a server error may hide an applied write: wait, then look
                # at the platform before writing again. (productSet is not repeated blindly by
                # the HTTP client: re-sent by handle without variant ids it would replace the
                # variants, so each repeat here is preceded by a look-up.)
                if exc.action is not Action.RETRY:
                    raise
                if attempt == WRITE_ATTEMPTS - 1:
                    landed = await self._landed(push, entry)
                    if landed is None:
                        raise
                    external_id = landed
                else:
                    await push.db(
                        self.store.outbox.mark, [entry.id], "sending", error=str(exc), attempt=True
                    )
                    # The platform's own wait when it names one (429 Retry-After, THROTTLED).
                    wait = getattr(exc, "retry_after", None) or WRITE_BACKOFF * 2**attempt
                    await push.engine.clock.sleep(wait)
                    continue
            await push.db(
                self.store.outbox.complete,
                push.target,
                "products",
                done=[entry.id],
                result=external_id,
                bindings={entry.canonical_key: external_id},
                baselines={entry.canonical_key: entry.payload["baseline"]},
            )
            if entry.payload.get("_creates"):
                push.summary.created += 1
            else:
                push.summary.updated += 1
            return

    async def _landed(self, push: PushRun, entry: OutboxEntry) -> str | None:
        """After the last lost answer: did a create land after all? (Updates cannot tell.)"""
        handle = entry.payload["product"].get("handle")
        if entry.payload.get("external_id") or not handle:
            return None
        found = await push.connector.find_product(handle)
        return None if found is None else found.external_id

    async def _write(self, push: PushRun, entry: OutboxEntry, verify: bool) -> str:
        payload = entry.payload
        product = Product.model_validate(payload["product"])
        external_id = payload.get("external_id")
        variant_ids = dict(payload.get("variant_ids") or {})
        if verify and not external_id and product.handle:
            found = await push.connector.find_product(product.handle)
            if found is not None:  # the create landed before its answer was lost
                external_id = found.external_id
                variant_ids = {**found.variant_ids, **variant_ids}
        if push.export_mapper is None:
            raise ConfigError(f"the {push.connector.platform} connector declares no product export")
        context = MapContext(
            push.target, push.connector.platform, push.connector.mapping_settings()
        )
        handles = {**variant_ids, **({SELF: external_id} if external_id else {})}
        payload = push.export_mapper(context).map(product, handles)
        outcome = await push.connector.upsert_product(payload, external_id)
        return outcome.external_id
