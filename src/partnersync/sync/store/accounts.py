"""Accounts: wired platform accounts, their secrets sealed by the vault."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, select

from partnersync.errors import ConfigError
from partnersync.sync.store.unit import (
    Repository,
    _accounts,
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

    def remove(self, name: str) -> bool:
        """Delete an account (its records and history stay); False if there was none."""
        with self.uow.transaction() as connection:
            result = connection.execute(_accounts.delete().where(_accounts.c.name == name))
        return bool(result.rowcount)

    # -- cursors and runs ----------------------------------------------------------------
