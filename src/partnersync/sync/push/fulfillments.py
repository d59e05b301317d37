"""Fulfilment exporter: the warehouse's shipments → tracking on the orders of their channel.

A shipment goes to the order it names on the target (by number or id). When a job pushes to
several shops, a shipment naming no ``channel`` is ambiguous (every Shopify shop numbers its
orders from #1001) and is reported instead of being sent to each shop's customer.

Shipments may carry lines (``sku`` + ``quantity``): an order shipped in several parcels gets one
fulfilment per parcel, each for its own lines. A parcel without lines fulfils what is left of
the order; a second one for the same order has nothing left and is reported with what to add.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from partnersync.errors import Action, ConnectorError
from partnersync.mapping.model import FulfillmentStatus, Shipment
from partnersync.sync.push.engine import Exporter, PushRun, exporter
from partnersync.sync.push.plan import FieldChange, PlannedWrite, Problem, PushOptions, PushPlan
from partnersync.sync.store import HubRecord, OutboxEntry

OPERATION = "create_fulfillment"


@exporter
class FulfillmentExporter(Exporter):
    """Tracking for the target's orders, one fulfilment per parcel."""

    entity = "fulfillments"
    reads = "orders"

    def plan(self, target: str, options: PushOptions, settings: Mapping[str, Any]) -> PushPlan:
        """Fulfilments for the target's orders from the sources' shipments."""
        plan = PushPlan(target, "fulfillments")
        orders = self.store.records.of(target, "orders")
        plan.target_records = len(orders)
        by_ref: dict[str, HubRecord] = {}
        for order in orders:
            by_ref[str(order.data.get("number"))] = order
            by_ref[order.external_id] = order
        targets = sorted({*options.targets, target})
        whole: set[str] = set()  # orders a parcel without lines fulfils in this plan
        # A parcel delivered once stays delivered, even where the platform's order does not
        # show the tracking (WooCommerce keeps it in a note).
        delivered = set(self.store.outbox.latest_done_content(target, "fulfillments"))
        for source in options.sources:
            for record in self.store.records.of(source, "fulfillments"):
                problem = self._plan_shipment(plan, record, by_ref, targets, whole, delivered)
                if problem is not None:
                    plan.problems.append(
                        Problem(record.external_id, problem, record.source_ref, record.data)
                    )
        return plan

    def _plan_shipment(
        self,
        plan: PushPlan,
        record: HubRecord,
        by_ref: Mapping[str, HubRecord],
        targets: list[str],
        whole: set[str],
        delivered: set[str],
    ) -> str | None:
        """Plan one shipment; returns why it cannot be placed, if it cannot."""
        shipment = record.data
        tracking, ref = shipment["tracking_number"], shipment["order_ref"]
        channel = shipment.get("channel")
        if channel and channel != plan.target:
            return None
        if not channel and len(targets) > 1:
            return (
                f"shipment {tracking} for order {ref} names no channel, and this job pushes to "
                f"{', '.join(targets)} (each numbers its own orders): add a channel column "
                "naming the shop the order came from"
            )
        order = by_ref.get(str(ref))
        if order is None:
            return f"order {ref!r} is not a known {plan.target} order"
        tracked = {f.get("tracking_number") for f in order.data.get("fulfillments") or []}
        if tracking in tracked or f"{order.canonical_key}#{tracking}" in delivered:
            plan.unchanged += 1
            return None
        if not shipment.get("lines"):
            fulfilled = order.data.get("fulfillment_status") == FulfillmentStatus.FULFILLED
            if fulfilled or order.canonical_key in whole:
                return (
                    f"order {order.data.get('number')} has nothing left to fulfil for parcel "
                    f"{tracking} (another parcel took the whole order): give the parcel sku and "
                    "quantity columns to say what it carries"
                )
            whole.add(order.canonical_key)
        plan.writes.append(
            PlannedWrite(
                key=f"{order.canonical_key}#{tracking}",
                label=f"{order.data.get('number')} ← {tracking}",
                operation=OPERATION,
                changes=[FieldChange("tracking", None, tracking)],
                payload={"order_external_id": order.external_id, "shipment": shipment},
                source_ref=record.source_ref,
                creates=True,
            )
        )
        return None

    async def send(self, push: PushRun) -> None:
        """One fulfilment per parcel; a repeat is checked against the platform first."""
        await push.send_each(lambda entry: self._deliver(push, entry), OPERATION)

    async def _deliver(self, push: PushRun, entry: OutboxEntry) -> None:
        shipment = Shipment.model_validate(entry.payload["shipment"])
        order_id = str(entry.payload["order_external_id"])
        connector = push.connector
        found = None
        if entry.status == "sending" or entry.attempts:  # an earlier attempt may have landed
            found = await connector.find_fulfillment(order_id, shipment.tracking_number)
        await push.db(self.store.outbox.mark, [entry.id], "sending", attempt=True)
        if found is None:
            try:
                found = await connector.create_fulfillment(order_id, shipment)
            except ConnectorError as exc:
                if exc.action is not Action.RETRY:
                    raise
                found = await connector.find_fulfillment(order_id, shipment.tracking_number)
                if found is None:
                    raise
        noted = await push.db(self._noted, push.target, order_id, found, shipment)
        await push.db(
            self.store.outbox.complete,
            push.target,
            "orders",
            done=[entry.id],
            result=found,
            field_patches=noted,
        )
        push.summary.created += 1

    def _noted(
        self, target: str, order_id: str, fulfillment_id: str, shipment: Shipment
    ) -> dict[str, dict[str, Any]]:
        """The hub copy's new fulfilments list, so the same parcel is not sent again."""
        record = self.store.records.find(target, "orders", order_id)
        if record is None:
            return {}
        fulfillments = list(record["data"].get("fulfillments") or [])
        if shipment.tracking_number in {f.get("tracking_number") for f in fulfillments}:
            return {}
        fulfillments.append(
            {
                "external_id": fulfillment_id,
                "status": "success",
                "carrier": shipment.carrier,
                "tracking_number": shipment.tracking_number,
                "tracking_url": shipment.tracking_url,
                "created_at": None,
            }
        )
        return {order_id: {"fulfillments": fulfillments}}
