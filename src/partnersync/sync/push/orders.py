"""Order exporter: the channels' orders → the brand's ERP/WMS (e.g. a file per run).

Each order is exported once as ``"event": "created"``. When its status changes afterwards —
financial status, fulfilment status, or a cancellation — it is exported again, whole, as
``"event": "updated"``, so the ERP hears of a cancellation after export. Other edits (a note, a
tag) do not export it again. The ERP upserts by (channel, external_id).

A batch is written under a key naming the target; a run killed after writing and before
recording finds the batch by its key instead of writing it twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from partnersync.failpoints import failpoint
from partnersync.sync.push.engine import Exporter, PushRun, exporter
from partnersync.sync.push.plan import FieldChange, PlannedWrite, PushOptions, PushPlan, digest
from partnersync.sync.store import OutboxEntry

OPERATION = "export_order"
STATUS_FIELDS = ("financial_status", "fulfillment_status", "cancelled_at")


@exporter
class OrderExporter(Exporter):
    """Orders out to the brand's system, created once and updated on status changes."""

    entity = "orders"

    def plan(self, target: str, options: PushOptions, settings: Mapping[str, Any]) -> PushPlan:
        """Orders of the source channels whose current status ``target`` has not received."""
        plan = PushPlan(target, "orders")
        delivered = self.store.outbox.latest_done_content(target, "orders")
        for source in options.sources:
            for record in self.store.records.of(source, "orders"):
                order = record.data
                known = record.canonical_key in delivered
                write = PlannedWrite(
                    key=record.canonical_key,
                    label=f"{source} {order.get('number')}",
                    operation=OPERATION,
                    changes=[FieldChange("export", None, order.get("number"))],
                    payload={
                        "channel": source,
                        "external_id": record.external_id,
                        "event": "updated" if known else "created",
                        **order,
                    },
                    creates=not known,
                    identity={name: order.get(name) for name in STATUS_FIELDS},
                )
                if delivered.get(record.canonical_key) == write.content_hash:
                    plan.unchanged += 1
                    continue
                plan.writes.append(write)
        return plan

    async def send(self, push: PushRun) -> None:
        """Open rows in batches: rows of an interrupted batch keep its key; new rows get one."""
        batches: dict[str | None, list[OutboxEntry]] = {}
        for entry in await push.enqueue(push.plan.writes):
            if entry.open:
                batches.setdefault(entry.batch_key, []).append(entry)
        fresh = batches.pop(None, [])
        if fresh:
            key = digest(push.target, *sorted(e.idempotency_key for e in fresh))
            ids = [e.id for e in fresh]
            await push.db(self.store.outbox.mark, ids, "sending", batch_key=key, attempt=True)
            batches[key] = fresh
        for batch_key, entries in batches.items():
            assert batch_key is not None
            where = push.connector.find_export(batch_key)  # written before a crash: not twice
            if where is None:
                orders = [
                    {k: v for k, v in e.payload.items() if not k.startswith("_")} for e in entries
                ]
                where = await push.connector.write_orders(batch_key, orders)
                failpoint("after_export_write")
            await push.db(
                self.store.outbox.complete,
                push.target,
                "orders",
                done=[e.id for e in entries],
                result=where,
            )
            push.summary.created += len(entries)
