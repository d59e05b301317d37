"""Accounts: wired platform accounts, their secrets sealed by the vault."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from partnersync.errors import ConfigError
from partnersync.sync.store.unit import (
    Repository,
    _accounts,
    _pending,
    utcnow_iso,
)


class AccountRepository(Repository):
    """Accounts and their sealed secrets."""

    def save(
        self,
        *,
        name: str,
        platform: str,
        base_url: str,
        api_version: str | None,
        options: dict[str, Any],
        secrets: dict[str, str],
    ) -> None:
        """Create or replace an account; secrets are encrypted, bound to the account name."""
        sealed = self.uow.vault.encrypt(orjson.dumps(secrets).decode(), f"account:{name}")
        row = {
            "name": name,
            "platform": platform,
            "base_url": base_url,
            "api_version": api_version,
            "options": orjson.dumps(options).decode(),
            "secrets": sealed,
            "created_at": utcnow_iso(),
        }
        with self.uow.transaction() as connection:
            connection.execute(_accounts.delete().where(_accounts.c.name == name))
            connection.execute(_accounts.insert(), [row])

    def update_secrets(self, name: str, updates: dict[str, str]) -> None:
        """Merge ``updates`` into an account's secrets in one transaction (a rotated token pair
        is stored whole or not at all)."""
        with self.uow.transaction() as connection:
            merged = {**self._secrets_in(connection, name), **updates}
            sealed = self.uow.vault.encrypt(orjson.dumps(merged).decode(), f"account:{name}")
            connection.execute(
                _accounts.update().where(_accounts.c.name == name).values(secrets=sealed)
            )

    def get(self, name: str) -> dict[str, Any] | None:
        """An account's settings, without its secrets."""
        with self.uow.transaction() as connection:
            row = connection.execute(select(_accounts).where(_accounts.c.name == name)).first()
        if row is None:
            return None
        return {
            "name": row.name,
            "platform": row.platform,
            "base_url": row.base_url,
            "api_version": row.api_version,
            "options": orjson.loads(row.options),
            "created_at": row.created_at,
            "checked_at": row.checked_at,
            "check_error": row.check_error,
            "last_ok_at": row.last_ok_at,
        }

    def secrets(self, name: str) -> dict[str, str]:
        """Decrypt an account's secrets (for building its auth flow; never print them)."""
        with self.uow.transaction() as connection:
            return self._secrets_in(connection, name)

    def _secrets_in(self, connection: Connection, name: str) -> dict[str, str]:
        sealed = connection.execute(
            select(_accounts.c.secrets).where(_accounts.c.name == name)
        ).scalar_one_or_none()
        if sealed is None:
            raise ConfigError(f"no account named {name!r}")
        result: dict[str, str] = orjson.loads(self.uow.vault.decrypt(sealed, f"account:{name}"))
        return result

    def every(self) -> list[dict[str, Any]]:
        """Every account, without secrets."""
        with self.uow.transaction() as connection:
            names = connection.execute(select(_accounts.c.name).order_by(_accounts.c.name))
            ordered = [row.name for row in names]
        return [account for name in ordered if (account := self.get(name))]

    def record_check(self, name: str, error: str | None) -> None:
        """Remember the outcome of a cheap authenticated call (``error`` None: it worked)."""
        now = utcnow_iso()
        values: dict[str, Any] = {"checked_at": now, "check_error": error}
        if error is None:
            values["last_ok_at"] = now
        with self.uow.transaction(unfenced=True) as connection:
            connection.execute(_accounts.update().where(_accounts.c.name == name).values(values))

    def remove(self, name: str) -> bool:
        """Delete an account (its records and history stay); False if there was none."""
        with self.uow.transaction() as connection:
            result = connection.execute(_accounts.delete().where(_accounts.c.name == name))
        return bool(result.rowcount)

    # -- cursors and runs ----------------------------------------------------------------


class PendingConnectRepository(Repository):
    """Connections waiting for the platform's callback (one use each, an hour at most)."""

    def open(
        self, state: str, *, name: str, platform: str, base_url: str, options: dict[str, Any]
    ) -> None:
        """Remember a connection started under ``state``."""
        with self.uow.transaction() as connection:
            connection.execute(
                _pending.insert(),
                [
                    {
                        "state": state,
                        "name": name,
                        "platform": platform,
                        "base_url": base_url,
                        "options": orjson.dumps(options).decode(),
                        "created_at": utcnow_iso(),
                    }
                ],
            )

    def claim(self, state: str, max_age_seconds: float = 3600) -> dict[str, Any] | None:
        """The pending connection of ``state``, marked completed (None if unknown, used or
        older than ``max_age_seconds``)."""
        oldest = (datetime.now(UTC) - timedelta(seconds=max_age_seconds)).isoformat()
        with self.uow.transaction() as connection:
            claimed = connection.execute(
                update(_pending)
                .where(
                    _pending.c.state == state,
                    _pending.c.completed_at.is_(None),
                    _pending.c.created_at >= oldest,
                )
                .values(completed_at=utcnow_iso())
                .returning(_pending)
            ).first()
        if claimed is None:
            return None
        row = dict(claimed._mapping)
        row["options"] = orjson.loads(row["options"])
        return row

    def completed(self, state: str) -> bool:
        """True once the callback of ``state`` arrived."""
        with self.uow.transaction() as connection:
            done = connection.execute(
                select(_pending.c.completed_at).where(_pending.c.state == state)
            ).scalar_one_or_none()
        return done is not None
