"""The outbox: every write to a target under its idempotency key, for its whole life."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import func, select, update

from partnersync.errors import StoreError
from partnersync.sync.binder import Binder
from partnersync.sync.store.bindings import put_baselines
from partnersync.sync.store.records import patch_fields
from partnersync.sync.store.unit import (
    OPEN_OUTBOX,
    PII_ENTITIES,
    OutboxEntry,
    Repository,
    _outbox,
    utcnow_iso,
)


class OutboxRepository(Repository):
    """Outbox rows: enqueue, send states, completion."""

    def enqueue(
        self,
        *,
        run_id: int,
        target: str,
        entity: str,
        writes: Sequence[tuple[str, str, str, Any, str | None, str]],
    ) -> list[OutboxEntry]:
        """Outbox rows for (key, operation, content hash, payload, source ref, fresh key).

        A row still open for the same key and content is the same attempt: it is returned as
        stored (with its idempotency key and state) and counted in this run. Otherwise a new
        row is added under the fresh key. Rows come back in the order of ``writes``.
        """
        now = utcnow_iso()
        keys = list(dict.fromkeys(w[0] for w in writes))
        with self.uow.transaction() as connection:
            open_rows = connection.execute(
                select(_outbox).where(
                    _outbox.c.target_account == target,
                    _outbox.c.entity == entity,
                    _outbox.c.status.in_(OPEN_OUTBOX),
                    _outbox.c.canonical_key.in_(keys),
                )
            ).all()
            by_content = {(row.canonical_key, row.content_hash): row for row in open_rows}
            chosen: list[str] = []
            fresh = []
            for key, operation, digest, payload, source_ref, fresh_key in writes:
                row = by_content.get((key, digest))
                if row is not None:
                    chosen.append(row.idempotency_key)
                    continue
                chosen.append(fresh_key)
                fresh.append(
                    {
                        "run_id": run_id,
                        "target_account": target,
                        "entity": entity,
                        "canonical_key": key,
                        "operation": operation,
                        "idempotency_key": fresh_key,
                        "content_hash": digest,
                        "payload": self._seal(entity, fresh_key, payload),
                        "status": "pending",
                        "attempts": 0,
                        "source_ref": source_ref,
                        "created_at": now,
                        "updated_at": now,
                    }
                )
            if fresh:
                connection.execute(_outbox.insert(), fresh)
            if chosen:
                connection.execute(
                    update(_outbox)
                    .where(_outbox.c.idempotency_key.in_(chosen))
                    .values(run_id=run_id)
                )
            rows = connection.execute(
                select(_outbox).where(_outbox.c.idempotency_key.in_(chosen))
            ).all()
        by_key = {row.idempotency_key: row for row in rows}
        return [self._entry(entity, by_key[k]) for k in dict.fromkeys(chosen)]

    def _seal(self, entity: str, idempotency_key: str, payload: Any) -> str:
        text = orjson.dumps(payload, default=str).decode()
        if entity in PII_ENTITIES:
            return self.uow.vault.encrypt(text, f"outbox:{idempotency_key}")
        return text

    def _entry(self, entity: str, row: Any) -> OutboxEntry:
        text = row.payload
        if entity in PII_ENTITIES:
            text = self.uow.vault.decrypt(text, f"outbox:{row.idempotency_key}")
        return OutboxEntry(
            row.id,
            row.canonical_key,
            row.idempotency_key,
            row.status,
            orjson.loads(text),
            row.batch_key,
            row.attempts,
            row.source_ref,
        )

    def supersede_open(self, target: str, entity: str, keep: set[tuple[str, str]]) -> int:
        """End open rows of (target, entity) whose (key, content hash) is not in ``keep``:
        the state they aimed at is no longer wanted. Returns how many ended."""
        with self.uow.transaction() as connection:
            rows = connection.execute(
                select(_outbox.c.id, _outbox.c.canonical_key, _outbox.c.content_hash).where(
                    _outbox.c.target_account == target,
                    _outbox.c.entity == entity,
                    _outbox.c.status.in_(OPEN_OUTBOX),
                )
            ).all()
            ended = [r.id for r in rows if (r.canonical_key, r.content_hash) not in keep]
            if ended:
                connection.execute(
                    update(_outbox)
                    .where(_outbox.c.id.in_(ended))
                    .values(status="superseded", updated_at=utcnow_iso())
                )
        return len(ended)

    def count_open(self, run_id: int) -> int:
        """Rows of a run still open (neither done, dead nor superseded)."""
        with self.uow.transaction() as connection:
            return int(
                connection.execute(
                    select(func.count())
                    .select_from(_outbox)
                    .where(_outbox.c.run_id == run_id, _outbox.c.status.in_(OPEN_OUTBOX))
                ).scalar_one()
            )

    def latest_done_content(self, target: str, entity: str) -> dict[str, str]:
        """Hub key → content hash of the newest write of it ``target`` received."""
        with self.uow.transaction() as connection:
            rows = connection.execute(
                select(_outbox.c.canonical_key, _outbox.c.content_hash)
                .where(
                    _outbox.c.target_account == target,
                    _outbox.c.entity == entity,
                    _outbox.c.status == "done",
                )
                .order_by(_outbox.c.id)
            )
            return {row.canonical_key: row.content_hash for row in rows}

    def mark(
        self,
        ids: Sequence[int],
        status: str,
        *,
        batch_key: str | None = None,
        result: str | None = None,
        error: str | None = None,
        attempt: bool = False,
    ) -> None:
        """Move rows to ``status`` (``sending`` is written before the request goes out)."""
        if not ids:
            return
        values: dict[str, Any] = {"status": status, "updated_at": utcnow_iso()}
        if batch_key is not None:
            values["batch_key"] = batch_key
        if result is not None:
            values["result"] = result
        if error is not None:
            values["error"] = error[:2000]
        if attempt:
            values["attempts"] = _outbox.c.attempts + 1
        with self.uow.transaction() as connection:
            connection.execute(update(_outbox).where(_outbox.c.id.in_(list(ids))).values(**values))

    def entry(self, outbox_id: int) -> tuple[str, str, OutboxEntry]:
        """(target, entity, row) of one outbox row."""
        with self.uow.transaction() as connection:
            row = connection.execute(select(_outbox).where(_outbox.c.id == outbox_id)).first()
        if row is None:
            raise StoreError(f"no outbox row {outbox_id}")
        return row.target_account, row.entity, self._entry(row.entity, row)

    def complete(
        self,
        target: str,
        entity: str,
        *,
        done: Sequence[int],
        result: str | None = None,
        bindings: Mapping[str, str] | None = None,
        baselines: Mapping[str, Any] | None = None,
        field_patches: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        """In one transaction: outbox rows done, the target's ids bound to hub keys (replacing
        older bindings of either), the agreed baselines, and fields of the target's hub copies
        (by external id) set to what was written."""
        now = utcnow_iso()
        with self.uow.transaction() as connection:
            if done:
                values: dict[str, Any] = {"status": "done", "updated_at": now}
                if result is not None:
                    values["result"] = result
                connection.execute(
                    update(_outbox).where(_outbox.c.id.in_(list(done))).values(**values)
                )
            Binder(connection, now).bind_targets(target, entity, bindings or {})
            put_baselines(connection, target, entity, baselines or {}, now)
            if field_patches:
                patch_fields(self.uow, connection, target, entity, field_patches, now)
