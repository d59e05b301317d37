"""Secrets at rest: AES-256-GCM with associated data, keyed by a key ring that supports rotation.

A ciphertext is ``v1.<key id>.<base64(nonce ‖ ciphertext+tag)>``. The associated data binds it to
where it is stored (e.g. ``account:demo-shop:access_token``), so copying a ciphertext to another
row fails to decrypt. Keys come from ``PARTNERSYNC_KEYS`` (``id:base64key,…``, the first one
encrypts) or from a key file of the same lines, created with mode 0600 by ``partnersync init``.
"""

from __future__ import annotations

import base64
import os
import secrets
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from partnersync.errors import VaultError

KEYS_ENV = "PARTNERSYNC_KEYS"
FOLLOW_INTERVAL = 1.0
"""Seconds between looks at the key file for a rotation."""
_VERSION = "v1"


class Vault:
    """Encrypts and decrypts short secrets; never logs or shows them."""

    def __init__(self, keys: dict[str, bytes], primary: str) -> None:
        if primary not in keys:
            raise VaultError("the primary key id is not in the key ring")
        for key_id, key in keys.items():
            if len(key) != 32:
                raise VaultError(f"key {key_id!r} is not 32 bytes (AES-256)")
            if "." in key_id or ":" in key_id:
                raise VaultError(f"key id {key_id!r} may not contain '.' or ':'")
        self._keys = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.primary = primary
        self._source: Path | None = None
        self._stamp: tuple[int, int] | None = None
        self._looked = 0.0

    def __repr__(self) -> str:
        return f"Vault(keys={sorted(self._keys)}, primary={self.primary!r})"

    @classmethod
    def parse(cls, text: str) -> Vault:
        """Build from ``id:base64key`` entries separated by commas or newlines."""
        keys: dict[str, bytes] = {}
        order: list[str] = []
        for entry in text.replace(",", "\n").splitlines():
            entry = entry.strip()
            if not entry or entry.startswith("#"):
                continue
            key_id, sep, encoded = entry.partition(":")
            if not sep:
                raise VaultError("key entries look like 'id:base64key'")
            try:
                keys[key_id] = base64.urlsafe_b64decode(encoded)
            except ValueError as exc:
                raise VaultError(f"key {key_id!r} is not valid base64") from exc
            order.append(key_id)
        if not order:
            raise VaultError("no encryption key given")
        return cls(keys, order[0])

    @classmethod
    def load(cls, key_file: Path) -> Vault:
        """Keys from ``PARTNERSYNC_KEYS`` if set, else from ``key_file``."""
        if os.environ.get(KEYS_ENV):
            return cls.parse(os.environ[KEYS_ENV])
        if not key_file.exists():
            raise VaultError(
                f"no encryption key at {key_file} (nor in {KEYS_ENV}): if this hub already holds "
                "data, restore the key file it was made with — nothing can read its data without "
                "it ('partnersync keys check' says which key id it needs); for a new project run "
                "'partnersync keys init'"
            )
        vault = cls.parse(key_file.read_text())
        vault._source, vault._stamp = key_file, _stamp_of(key_file)
        return vault

    def _follow_key_file(self, *, now: bool = False) -> None:
        """Pick up a key file replaced since it was read (``keys rotate`` in another process):
        a running daemon encrypts under the new primary within a second. At most one stat() a
        second, however many values a page seals."""
        if self._source is None:
            return
        if not now and time.monotonic() - self._looked < FOLLOW_INTERVAL:
            return
        self._looked = time.monotonic()
        stamp = _stamp_of(self._source)
        if stamp is None or stamp == self._stamp:
            return
        try:
            fresh = Vault.parse(self._source.read_text())
        except (OSError, VaultError):
            return  # mid-replacement or unreadable: keep the ring we have
        self._keys, self.primary, self._stamp = fresh._keys, fresh.primary, stamp

    @classmethod
    def ephemeral(cls) -> Vault:
        """A vault with a throwaway key: for reading which keys a hub uses, never its data."""
        return cls({"scan": secrets.token_bytes(32)}, "scan")

    @property
    def key_ids(self) -> list[str]:
        """The ids of the keys in the ring, the primary first."""
        return [self.primary, *sorted(k for k in self._keys if k != self.primary)]

    @staticmethod
    def new_key_entry(key_id: str) -> str:
        """``id:base64key`` for a fresh random AES-256 key."""
        return f"{key_id}:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()

    @staticmethod
    def write_key_file(key_file: Path, entries: list[str]) -> None:
        """Replace ``key_file`` atomically with these entries (the first encrypts), mode 0600."""
        key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = key_file.with_name(f".{key_file.name}.new")
        temporary.unlink(missing_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write("".join(f"{entry}\n" for entry in entries))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, key_file)

    @staticmethod
    def create_key_file(key_file: Path) -> None:
        """Write a fresh random key to ``key_file`` (mode 0600); an existing file is kept."""
        if key_file.exists():
            return
        Vault.write_key_file(key_file, [Vault.new_key_entry("k1")])

    def encrypt(self, plaintext: str, aad: str) -> str:
        """Encrypt under the primary key, bound to ``aad``."""
        self._follow_key_file()
        nonce = secrets.token_bytes(12)
        sealed = self._keys[self.primary].encrypt(nonce, plaintext.encode(), aad.encode())
        payload = base64.urlsafe_b64encode(nonce + sealed).decode()
        return f"{_VERSION}.{self.primary}.{payload}"

    def decrypt(self, token: str, aad: str) -> str:
        """Decrypt a value made by :meth:`encrypt` with the same ``aad``."""
        try:
            version, key_id, payload = token.split(".", 2)
        except ValueError:
            raise VaultError("not a partnersync ciphertext") from None
        if version != _VERSION:
            raise VaultError(f"ciphertext of unknown version {version!r}")
        if key_id not in self._keys:
            self._follow_key_file(now=True)  # a value sealed under a key rotated in since
        if key_id not in self._keys:
            raise VaultError(
                f"this value is encrypted under key {key_id!r}, which the key ring "
                f"({', '.join(self.key_ids)}) does not hold: restore that key"
            )
        try:
            raw = base64.urlsafe_b64decode(payload)
            return self._keys[key_id].decrypt(raw[:12], raw[12:], aad.encode()).decode()
        except (InvalidTag, ValueError) as exc:
            raise VaultError("ciphertext was tampered with or belongs elsewhere") from exc


def _stamp_of(path: Path) -> tuple[int, int] | None:
    try:
        status = path.stat()
    except OSError:
        return None
    return status.st_mtime_ns, status.st_ino
