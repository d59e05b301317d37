"""Bindings and baselines: a hub record pushed to a target, and what both sides last agreed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Connection, select

from partnersync.sync.binder import Binder
from partnersync.sync.store.unit import Repository, _baselines, utcnow_iso


class BindingRepository(Repository):
    """Target ids of pushed hub records, and the baselines of their fields."""

    def get(self, target: str, entity: str, canonical_key: str) -> str | None:
        """The target's id for a hub record we pushed (or adopted)."""
        with self.uow.transaction() as connection:
            return Binder(connection, utcnow_iso()).target_id(target, entity, canonical_key)

    def of(self, target: str, entity: str) -> dict[str, str]:
        """Every binding of ``entity`` to ``target``: canonical key → the target's id."""
        with self.uow.transaction() as connection:
            return Binder(connection, utcnow_iso()).target_ids(target, entity)

    def baselines(self, target: str, entity: str) -> dict[str, dict[str, Any]]:
        """Every baseline of ``entity`` on ``target``, by canonical key."""
        with self.uow.transaction() as connection:
            rows = connection.execute(
                select(_baselines.c.canonical_key, _baselines.c.data).where(
                    _baselines.c.target_account == target, _baselines.c.entity == entity
                )
            )
            return {row.canonical_key: dict(orjson.loads(row.data)) for row in rows}


def put_baselines(
    connection: Connection, target: str, entity: str, baselines: Mapping[str, Any], now: str
) -> None:
    """Replace the baselines of these hub keys on ``target`` (inside the caller's transaction)."""
    if not baselines:
        return
    connection.execute(
        _baselines.delete().where(
            _baselines.c.target_account == target,
            _baselines.c.entity == entity,
            _baselines.c.canonical_key.in_(list(baselines)),
        )
    )
    connection.execute(
        _baselines.insert(),
        [
            {
                "target_account": target,
                "entity": entity,
                "canonical_key": key,
                "data": orjson.dumps(data, default=str).decode(),
                "updated_at": now,
            }
            for key, data in baselines.items()
        ],
    )
