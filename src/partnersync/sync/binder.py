"""The binder: the only code that knows how external ids map to canonical keys (STYLE habit 8).

Two relations, both kept here: ``links`` — a record an account holds (pulled) ⇄ its canonical
key, with the platform handle a write addresses; and ``bindings`` — a hub record pushed to a
target ⇄ the target's id for it.

A canonical key is derived from (entity, account, external id) the first time a record is seen,
so rebuilding a hub from the same platform yields the same keys; later issues may bind records
of other accounts to an existing key (e.g. by SKU) through :meth:`Binder.bind`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, select, update

from partnersync.sync.tables import BindingRow, LinkRow

_links = LinkRow.__table__  # type: ignore[attr-defined]
_bindings = BindingRow.__table__  # type: ignore[attr-defined]


def derive_key(entity: str, account: str, external_id: str) -> str:
    """A stable canonical key for a record first seen on ``account``."""
    digest = hashlib.sha256(f"{entity}\x00{account}\x00{external_id}".encode()).hexdigest()
    return f"{entity[:3]}_{digest[:20]}"


class Binder:
    """Reads and writes links on one open connection (inside the caller's transaction)."""

    def __init__(self, connection: Connection, now: str) -> None:
        self.connection = connection
        self.now = now

    def to_internal(self, account: str, entity: str, external_ids: Iterable[str]) -> dict[str, str]:
        """External id → canonical key for the ids already bound."""
        ids = list(external_ids)
        if not ids:
            return {}
        rows = self.connection.execute(
            select(_links.c.external_id, _links.c.canonical_key).where(
                _links.c.account == account,
                _links.c.entity == entity,
                _links.c.external_id.in_(ids),
            )
        )
        return {row.external_id: row.canonical_key for row in rows}

    def to_external(self, entity: str, canonical_key: str) -> dict[str, str]:
        """Account → external id of a canonical record."""
        rows = self.connection.execute(
            select(_links.c.account, _links.c.external_id).where(
                _links.c.entity == entity, _links.c.canonical_key == canonical_key
            )
        )
        return {row.account: row.external_id for row in rows}

    def bind_all(
        self,
        account: str,
        entity: str,
        external_ids: Iterable[str],
        handles: Mapping[str, str | None] | None = None,
    ) -> dict[str, str]:
        """Canonical keys for ``external_ids``, creating links for the ones not bound yet and
        keeping each record's platform handle (what a write to it addresses) up to date."""
        ids = list(dict.fromkeys(external_ids))
        known = self.to_internal(account, entity, ids)
        handles = handles or {}
        for external_id in known:
            if handles.get(external_id):
                self.connection.execute(
                    update(_links)
                    .where(
                        _links.c.account == account,
                        _links.c.entity == entity,
                        _links.c.external_id == external_id,
                        _links.c.handle.is_distinct_from(handles[external_id]),
                    )
                    .values(handle=handles[external_id])
                )
        new: list[dict[str, Any]] = [
            {
                "account": account,
                "entity": entity,
                "external_id": external_id,
                "canonical_key": derive_key(entity, account, external_id),
                "created_at": self.now,
                "handle": handles.get(external_id),
            }
            for external_id in ids
            if external_id not in known
        ]
        if new:
            self.connection.execute(_links.insert(), new)
            known.update({str(row["external_id"]): str(row["canonical_key"]) for row in new})
        return known

    # -- pushed records ------------------------------------------------------------------
    def target_id(self, target: str, entity: str, canonical_key: str) -> str | None:
        """The target's id for a hub record pushed (or adopted) there."""
        value: str | None = self.connection.execute(
            select(_bindings.c.external_id).where(
                _bindings.c.target_account == target,
                _bindings.c.entity == entity,
                _bindings.c.canonical_key == canonical_key,
            )
        ).scalar_one_or_none()
        return value

    def target_ids(self, target: str, entity: str) -> dict[str, str]:
        """Canonical key → the target's id, for every ``entity`` record pushed to ``target``."""
        rows = self.connection.execute(
            select(_bindings.c.canonical_key, _bindings.c.external_id).where(
                _bindings.c.target_account == target, _bindings.c.entity == entity
            )
        )
        return {row.canonical_key: row.external_id for row in rows}

    def bind_targets(self, target: str, entity: str, pairs: Mapping[str, str]) -> None:
        """Bind hub keys to the target's ids, replacing an older binding of either side."""
        for key, external_id in pairs.items():
            self.connection.execute(
                _bindings.delete().where(
                    _bindings.c.target_account == target,
                    _bindings.c.entity == entity,
                    (_bindings.c.canonical_key == key) | (_bindings.c.external_id == external_id),
                )
            )
            self.connection.execute(
                _bindings.insert(),
                [
                    {
                        "target_account": target,
                        "entity": entity,
                        "canonical_key": key,
                        "external_id": external_id,
                        "created_at": self.now,
                    }
                ],
            )
