"""Dead letters: records that could not be mapped or written, their payloads sealed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from partnersync.errors import StoreError
from partnersync.sync.store.unit import (
    DeadLetter,
    OutboxEntry,
    Repository,
    UnitOfWork,
    _dead,
    _dead_letter_aad,
    content_hash,
    utcnow_iso,
)


class DeadLetterRepository(Repository):
    """Open and resolved dead letters of pulls and pushes."""

    def unresolved(
        self, *, account: str | None = None, entity: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Open dead letters, newest first, without their payloads."""
        query = (
            select(_dead)
            .where(_dead.c.resolved_at.is_(None))
            .order_by(_dead.c.id.desc())
            .limit(limit)
        )
        if account:
            query = query.where(_dead.c.account == account)
        if entity:
            query = query.where(_dead.c.entity == entity)
        with self.uow.transaction() as connection:
            rows = [dict(row._mapping) for row in connection.execute(query)]
        for row in rows:
            row.pop("payload")
        return rows

    def payload(self, letter_id: int) -> Any:
        """The decrypted raw payload of one dead letter."""
        with self.uow.transaction() as connection:
            row = connection.execute(select(_dead).where(_dead.c.id == letter_id)).first()
        if row is None:
            raise StoreError(f"no dead letter {letter_id}")
        return orjson.loads(
            self.uow.vault.decrypt(
                row.payload, _dead_letter_aad(row.account, row.entity, row.external_id)
            )
        )

    # -- push: hub copies, bindings, baselines, outbox, conflicts ---------------------------

    def resolve(self, letter_id: int) -> None:
        """Mark a dead letter handled."""
        with self.uow.transaction() as connection:
            connection.execute(
                update(_dead).where(_dead.c.id == letter_id).values(resolved_at=utcnow_iso())
            )

    def get(self, letter_id: int) -> dict[str, Any]:
        """One dead letter (without its payload)."""
        with self.uow.transaction() as connection:
            row = connection.execute(select(_dead).where(_dead.c.id == letter_id)).first()
        if row is None:
            raise StoreError(f"no dead letter {letter_id}")
        letter = dict(row._mapping)
        letter.pop("payload")
        return letter

    def add_push(
        self,
        *,
        run_id: int,
        target: str,
        entity: str,
        entry: OutboxEntry,
        reason: str,
        error_class: str,
        operation: str,
    ) -> None:
        """A write the platform keeps refusing, with its message."""
        raw = orjson.dumps(entry.payload, default=str)
        letter = DeadLetter(
            entry.canonical_key, operation, reason, error_class, raw, entry.source_ref
        )
        with self.uow.transaction() as connection:
            insert_dead_letters(
                self.uow,
                connection,
                run_id=run_id,
                account=target,
                entity=entity,
                letters=[letter],
                direction="push",
                outbox_id=entry.id,
            )

    def add_problem(
        self,
        *,
        run_id: int,
        target: str,
        entity: str,
        key: str,
        reason: str,
        payload: Any,
        source_ref: str | None,
    ) -> None:
        """A record the push cannot place (e.g. an unknown SKU), as an open dead letter."""
        raw = orjson.dumps(payload, default=str)
        letter = DeadLetter(key, "target", reason, "PushProblem", raw, source_ref)
        with self.uow.transaction() as connection:
            fresh = new_dead_letters(connection, target, entity, [letter])
            insert_dead_letters(
                self.uow,
                connection,
                run_id=run_id,
                account=target,
                entity=entity,
                letters=fresh,
                direction="push",
            )


def insert_dead_letters(
    uow: UnitOfWork,
    connection: Connection,
    *,
    run_id: int,
    account: str,
    entity: str,
    letters: Sequence[DeadLetter],
    page: int = 0,
    direction: str = "pull",
    outbox_id: int | None = None,
) -> None:
    """Store dead letters with their payloads sealed to the record (the one place rows are
    written)."""
    if not letters:
        return
    now = utcnow_iso()
    connection.execute(
        _dead.insert(),
        [
            {
                "run_id": run_id,
                "account": account,
                "entity": entity,
                "external_id": letter.external_id,
                "field": letter.field,
                "reason": letter.reason,
                "error_class": letter.error_class,
                "page": page,
                "payload": uow.vault.encrypt(
                    letter.payload.decode("utf-8", "replace"),
                    _dead_letter_aad(account, entity, letter.external_id),
                ),
                "payload_hash": content_hash(letter.payload),
                "created_at": now,
                "source_ref": letter.source_ref,
                "direction": direction,
                "outbox_id": outbox_id,
            }
            for letter in letters
        ],
    )


def new_dead_letters(
    connection: Connection, account: str, entity: str, letters: Sequence[DeadLetter]
) -> list[DeadLetter]:
    """Letters not already open with the same payload (a re-read must not pile them up)."""
    if not letters:
        return []
    open_rows = connection.execute(
        select(_dead.c.external_id, _dead.c.payload_hash).where(
            _dead.c.account == account,
            _dead.c.entity == entity,
            _dead.c.resolved_at.is_(None),
            _dead.c.payload_hash.in_([content_hash(letter.payload) for letter in letters]),
        )
    )
    seen = {(row.external_id, row.payload_hash) for row in open_rows}
    fresh = []
    for letter in letters:
        key = (letter.external_id, content_hash(letter.payload))
        if key not in seen:
            seen.add(key)
            fresh.append(letter)
    return fresh
