"""What the hub holds encrypted, under which keys: for checking, rotating and retiring keys.

Every sealed value is a vault ciphertext ``v1.<key id>.<…>`` bound to where it is stored (its
associated data): account secrets, order records (customer data), dead-letter payloads and the
outbox payloads of orders. Key ids are read without decrypting, so a hub can say which key it
needs even when the key file is missing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy import select, update

from partnersync.sync.store.unit import (
    PII_ENTITIES,
    Repository,
    _accounts,
    _dead,
    _dead_letter_aad,
    _outbox,
    _records,
)


@dataclass(frozen=True)
class Sealed:
    """One encrypted value: where it is, what it is bound to, and the ciphertext."""

    table: str
    row: str | int
    aad: str
    token: str

    @property
    def key_id(self) -> str:
        """The id of the key it is encrypted under."""
        parts = self.token.split(".", 2)
        return parts[1] if len(parts) == 3 else "?"


class KeyRepository(Repository):
    """Every sealed value of the hub, by key."""

    def sealed(self) -> Iterator[Sealed]:
        """Each encrypted value with its associated data (read in one transaction)."""
        with self.uow.transaction() as connection:
            for row in connection.execute(select(_accounts.c.name, _accounts.c.secrets)):
                yield Sealed("accounts", row.name, f"account:{row.name}", row.secrets)
            records = select(
                _records.c.id, _records.c.entity, _records.c.canonical_key, _records.c.data
            )
            for row in connection.execute(records.where(_records.c.entity.in_(PII_ENTITIES))):
                aad = f"record:{row.entity}:{row.canonical_key}"
                yield Sealed("records", row.id, aad, row.data)
            letters = select(
                _dead.c.id, _dead.c.account, _dead.c.entity, _dead.c.external_id, _dead.c.payload
            )
            for row in connection.execute(letters):
                aad = _dead_letter_aad(row.account, row.entity, row.external_id)
                yield Sealed("dead_letters", row.id, aad, row.payload)
            outbox = select(_outbox.c.id, _outbox.c.idempotency_key, _outbox.c.payload)
            for row in connection.execute(outbox.where(_outbox.c.entity.in_(PII_ENTITIES))):
                yield Sealed("outbox", row.id, f"outbox:{row.idempotency_key}", row.payload)

    def key_ids(self) -> Counter[str]:
        """How many values each key id encrypts."""
        return Counter(value.key_id for value in self.sealed())

    def reencrypt(self) -> int:
        """Re-encrypt every value not under the vault's primary key; returns how many."""
        vault = self.uow.vault
        stale = [value for value in self.sealed() if value.key_id != vault.primary]
        tables = {
            "accounts": (_accounts, _accounts.c.name, "secrets"),
            "records": (_records, _records.c.id, "data"),
            "dead_letters": (_dead, _dead.c.id, "payload"),
            "outbox": (_outbox, _outbox.c.id, "payload"),
        }
        for start in range(0, len(stale), 500):
            with self.uow.transaction() as connection:
                for value in stale[start : start + 500]:
                    table, column, field = tables[value.table]
                    fresh = vault.encrypt(vault.decrypt(value.token, value.aad), value.aad)
                    connection.execute(
                        update(table)
                        .where(column == value.row, getattr(table.c, field) == value.token)
                        .values({field: fresh})
                    )
        return len(stale)
