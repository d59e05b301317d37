"""Records: each account's canonical records, committed a page at a time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, bindparam, func, select, update

from partnersync.sync.binder import Binder
from partnersync.sync.store.dead_letters import insert_dead_letters, new_dead_letters
from partnersync.sync.store.runs import write_cursor
from partnersync.sync.store.unit import (
    DeadLetter,
    HubRecord,
    MappedRecord,
    PageOutcome,
    Repository,
    UnitOfWork,
    _links,
    _records,
    _runs,
    content_hash,
    utcnow_iso,
)


class RecordRepository(Repository):
    """Canonical records by account, entity and external id."""

    def commit_page(
        self,
        *,
        run_id: int,
        account: str,
        entity: str,
        page: int,
        requests: int,
        records: Sequence[MappedRecord],
        dead_letters: Sequence[DeadLetter],
        out_of_window: int,
        cursor: str | None,
        resume_token: str | None = None,
        resumable: bool = False,
    ) -> PageOutcome:
        """Upsert a page, its dead letters, the run's counts and the cursor — and, for a
        ``resumable`` walk, where it goes on after this page — atomically."""
        now = utcnow_iso()
        with self.uow.transaction() as connection:
            binder = Binder(connection, now)
            latest: dict[str, MappedRecord] = {}
            for record in records:
                latest[record.external_id] = record  # a page repeating a record keeps the last
            keys = binder.bind_all(
                account, entity, latest, {i: r.handle for i, r in latest.items()}
            )
            existing = {
                row.canonical_key: row.content_hash
                for row in connection.execute(
                    select(_records.c.canonical_key, _records.c.content_hash).where(
                        _records.c.entity == entity,
                        _records.c.canonical_key.in_(list(keys.values())),
                    )
                )
            }
            inserts: list[dict[str, Any]] = []
            changes: list[dict[str, Any]] = []
            created = updated = unchanged = 0
            for external_id, record in latest.items():
                key = keys[external_id]
                previous = existing.get(key)
                if previous == record.content_hash:
                    unchanged += 1  # nothing to seal or write
                    continue
                stored = self.uow.seal(entity, key, record.data)
                if previous is None:
                    created += 1
                    inserts.append(
                        {
                            "entity": entity,
                            "canonical_key": key,
                            "content_hash": record.content_hash,
                            "data": stored,
                            "source_updated_at": record.source_updated_at,
                            "created_at": now,
                            "updated_at": now,
                            "created_run_id": run_id,
                            "updated_run_id": run_id,
                            "source_ref": record.source_ref,
                        }
                    )
                else:
                    updated += 1
                    changes.append(
                        {
                            "match_key": key,
                            "new_hash": record.content_hash,
                            "new_data": stored,
                            "new_source_updated_at": record.source_updated_at,
                            "new_source_ref": record.source_ref,
                        }
                    )
            if changes:
                # One statement for the page's changed records (executemany), not one each.
                connection.execute(
                    update(_records)
                    .where(
                        _records.c.entity == entity,
                        _records.c.canonical_key == bindparam("match_key"),
                    )
                    .values(
                        content_hash=bindparam("new_hash"),
                        data=bindparam("new_data"),
                        source_updated_at=bindparam("new_source_updated_at"),
                        updated_at=now,
                        updated_run_id=run_id,
                        source_ref=bindparam("new_source_ref"),
                    ),
                    changes,
                )
            if inserts:
                connection.execute(_records.insert(), inserts)
            insert_dead_letters(
                self.uow,
                connection,
                run_id=run_id,
                account=account,
                entity=entity,
                letters=new_dead_letters(connection, account, entity, dead_letters),
                page=page,
            )
            connection.execute(
                update(_runs)
                .where(_runs.c.id == run_id)
                .values(
                    pages=_runs.c.pages + 1,
                    requests=_runs.c.requests + requests,
                    fetched=_runs.c.fetched + len(records) + len(dead_letters),
                    created=_runs.c.created + created,
                    updated=_runs.c.updated + updated,
                    unchanged=_runs.c.unchanged + unchanged,
                    dead_lettered=_runs.c.dead_lettered + len(dead_letters),
                    out_of_window=_runs.c.out_of_window + out_of_window,
                    **({"resume_token": resume_token} if resumable else {}),
                )
            )
            if cursor is not None:
                write_cursor(connection, account, entity, cursor, run_id)
        return PageOutcome(created, updated, unchanged, len(dead_letters))

    def count(self, entity: str | None = None) -> int:
        """Canonical records stored (of one entity, or all)."""
        query = select(func.count()).select_from(_records)
        if entity:
            query = query.where(_records.c.entity == entity)
        with self.uow.transaction() as connection:
            return int(connection.execute(query).scalar_one())

    def find(self, account: str, entity: str, external_id: str) -> dict[str, Any] | None:
        """A canonical record by the account's external id, decrypted."""
        with self.uow.transaction() as connection:
            key = (
                Binder(connection, "").to_internal(account, entity, [external_id]).get(external_id)
            )
            if key is None:
                return None
            row = connection.execute(
                select(_records).where(_records.c.entity == entity, _records.c.canonical_key == key)
            ).first()
        if row is None:
            return None
        return {
            "canonical_key": key,
            "entity": entity,
            "content_hash": row.content_hash,
            "updated_at": row.updated_at,
            "source_updated_at": row.source_updated_at,
            "data": self.uow.unseal(entity, key, row.data),
        }

    def every(self, entity: str) -> Iterator[dict[str, Any]]:
        """Every canonical record of ``entity``, decrypted (streams; for exports and tests)."""
        with self.uow.transaction() as connection:
            rows = connection.execution_options(yield_per=500).execute(
                select(_records.c.canonical_key, _records.c.data).where(_records.c.entity == entity)
            )
            for row in rows:
                yield self.uow.unseal(entity, row.canonical_key, row.data)

    def of(
        self, account: str, entity: str, *, external_ids: Sequence[str] | None = None
    ) -> list[HubRecord]:
        """Records ``account`` contributed for ``entity`` (all, or these ids), decrypted."""
        query = (
            select(
                _links.c.external_id,
                _links.c.handle,
                _records.c.canonical_key,
                _records.c.data,
                _records.c.source_ref,
            )
            .join(
                _records,
                (_records.c.entity == _links.c.entity)
                & (_records.c.canonical_key == _links.c.canonical_key),
            )
            .where(_links.c.account == account, _links.c.entity == entity)
            .order_by(_links.c.id)
        )
        if external_ids is not None:
            query = query.where(_links.c.external_id.in_(list(external_ids)))
        with self.uow.transaction() as connection:
            rows = connection.execute(query).all()
        return [
            HubRecord(
                account,
                row.external_id,
                row.canonical_key,
                self.uow.unseal(entity, row.canonical_key, row.data),
                row.source_ref,
                row.handle,
            )
            for row in rows
        ]


def patch_fields(
    uow: UnitOfWork,
    connection: Connection,
    account: str,
    entity: str,
    patches: Mapping[str, Mapping[str, Any]],
    now: str,
) -> None:
    keys = Binder(connection, now).to_internal(account, entity, patches)
    if not keys:
        return
    rows = connection.execute(
        select(_records.c.canonical_key, _records.c.data).where(
            _records.c.entity == entity, _records.c.canonical_key.in_(list(keys.values()))
        )
    ).all()
    stored = {row.canonical_key: row.data for row in rows}
    for external_id, key in keys.items():
        if key not in stored:
            continue
        data = {**uow.unseal(entity, key, stored[key]), **patches[external_id]}
        raw = orjson.dumps(data)
        connection.execute(
            update(_records)
            .where(_records.c.entity == entity, _records.c.canonical_key == key)
            .values(data=uow.seal(entity, key, raw), content_hash=content_hash(raw))
        )
