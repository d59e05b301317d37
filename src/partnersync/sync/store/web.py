"""The connect page's sign-in: admins with scrypt password hashes, and server-side sessions
stored by the hash of their cookie (signing out or expiring ends them for good)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from partnersync.sync.store.unit import Repository, _web_admins, _web_sessions, utcnow_iso

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
"""scrypt's cost (OWASP's interactive-login figures): ~35 ms and 32 MiB per check."""


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` of a password (random 16-byte salt)."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def password_matches(password: str, stored: str) -> bool:
    """True when ``password`` is the one ``stored`` was made from (constant-time compare)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        again = _scrypt(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(again.hex(), digest)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32
    )


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@functools.cache
def _nobody() -> str:
    """A hash to check against when the user name is unknown: answers take as long either way
    (made on first use: scrypt costs every command's start-up otherwise)."""
    return hash_password(secrets.token_urlsafe(16))


class WebRepository(Repository):
    """Admins and browser sessions."""

    def set_admin(self, username: str, password: str) -> None:
        """Create an admin or replace its password (its open sessions end)."""
        row = {
            "username": username,
            "password_hash": hash_password(password),
            "created_at": utcnow_iso(),
        }
        with self.uow.transaction(unfenced=True) as connection:
            connection.execute(_web_admins.delete().where(_web_admins.c.username == username))
            connection.execute(_web_admins.insert(), [row])
            connection.execute(_web_sessions.delete().where(_web_sessions.c.username == username))

    def admins(self) -> list[str]:
        """Admin user names."""
        with self.uow.transaction(unfenced=True) as connection:
            rows = connection.execute(select(_web_admins.c.username).order_by("username"))
            return [row.username for row in rows]

    def check_password(self, username: str, password: str) -> bool:
        """True for an admin's right password."""
        with self.uow.transaction(unfenced=True) as connection:
            stored = connection.execute(
                select(_web_admins.c.password_hash).where(_web_admins.c.username == username)
            ).scalar_one_or_none()
        return password_matches(password, stored or _nobody()) and stored is not None

    def open_session(self, hours: float, username: str | None = None) -> tuple[str, str]:
        """A new session: its cookie token and its CSRF token."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        with self.uow.transaction(unfenced=True) as connection:
            connection.execute(
                delete(_web_sessions).where(_web_sessions.c.expires_at < now.isoformat())
            )
            connection.execute(
                _web_sessions.insert(),
                [
                    {
                        "token_hash": _token_hash(token),
                        "username": username,
                        "csrf_token": csrf,
                        "created_at": now.isoformat(),
                        "expires_at": (now + timedelta(hours=hours)).isoformat(),
                    }
                ],
            )
        return token, csrf

    def session(self, token: str) -> dict[str, Any] | None:
        """The live session of a cookie token (None: unknown or expired)."""
        with self.uow.transaction(unfenced=True) as connection:
            row = connection.execute(
                select(_web_sessions).where(
                    _web_sessions.c.token_hash == _token_hash(token),
                    _web_sessions.c.expires_at >= utcnow_iso(),
                )
            ).first()
        return dict(row._mapping) if row is not None else None

    def end_session(self, token: str) -> None:
        """Sign out: the session is gone."""
        with self.uow.transaction(unfenced=True) as connection:
            connection.execute(
                delete(_web_sessions).where(_web_sessions.c.token_hash == _token_hash(token))
            )

    def sessions_of(self, username: str) -> int:
        """How many live sessions a user has (for tests and the admin command)."""
        with self.uow.transaction(unfenced=True) as connection:
            rows = connection.execute(
                select(_web_sessions.c.token_hash).where(
                    _web_sessions.c.username == username,
                    _web_sessions.c.expires_at >= utcnow_iso(),
                )
            ).all()
        return len(rows)


__all__ = ["WebRepository", "hash_password", "password_matches"]
