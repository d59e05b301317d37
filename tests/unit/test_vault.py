"""Secrets at rest: AES-256-GCM bound to where they are stored, with key rotation."""

from __future__ import annotations

import base64
import os
import secrets
import stat
from pathlib import Path

import pytest

from partnersync.auth.vault import Vault
from partnersync.errors import VaultError


def key_entry(key_id: str) -> str:
    return f"{key_id}:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def test_roundtrip_and_no_plaintext_in_ciphertext() -> None:
    vault = Vault.parse(key_entry("k1"))
    sealed = vault.encrypt("shpat_secret_value", "account:shop")
    assert "shpat_secret_value" not in sealed
    assert vault.decrypt(sealed, "account:shop") == "shpat_secret_value"
    assert vault.encrypt("x", "a") != vault.encrypt("x", "a")  # fresh nonce each time


def test_tampered_ciphertext_is_refused() -> None:
    vault = Vault.parse(key_entry("k1"))
    sealed = vault.encrypt("secret", "account:shop")
    version, key_id, payload = sealed.split(".", 2)
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[-1] ^= 1
    tampered = f"{version}.{key_id}.{base64.urlsafe_b64encode(bytes(raw)).decode()}"
    with pytest.raises(VaultError, match="tampered"):
        vault.decrypt(tampered, "account:shop")


def test_ciphertext_moved_to_another_row_does_not_decrypt() -> None:
    vault = Vault.parse(key_entry("k1"))
    sealed = vault.encrypt("secret", "account:shop-a")
    with pytest.raises(VaultError):
        vault.decrypt(sealed, "account:shop-b")


def test_rotation_new_primary_still_reads_old_ciphertexts() -> None:
    old_entry = key_entry("k1")
    old = Vault.parse(old_entry)
    sealed = old.encrypt("secret", "aad")
    rotated = Vault.parse(key_entry("k2") + "," + old_entry)
    assert rotated.primary == "k2"
    assert rotated.decrypt(sealed, "aad") == "secret"
    assert rotated.encrypt("secret", "aad").startswith("v1.k2.")
    # A ring without the key says which key the value needs (never "tampered").
    with pytest.raises(VaultError, match=r"encrypted under key 'k1'.*ring \(k3\)"):
        Vault.parse(key_entry("k3")).decrypt(sealed, "aad")


def test_key_file_is_private_and_repr_shows_no_key(tmp_path: Path) -> None:
    key_file = tmp_path / ".partnersync" / "key"
    Vault.create_key_file(key_file)
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    vault = Vault.load(key_file)
    key_text = key_file.read_text().split(":", 1)[1].strip()
    assert key_text not in repr(vault)


def test_missing_key_says_what_to_do_and_never_to_make_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PARTNERSYNC_KEYS", raising=False)
    with pytest.raises(VaultError, match="restore the key file") as raised:
        Vault.load(tmp_path / "absent")
    assert "keys check" in str(raised.value)
    assert "partnersync init" not in str(raised.value)


def test_bad_keys_are_refused() -> None:
    with pytest.raises(VaultError, match="32 bytes"):
        Vault.parse("k1:" + base64.urlsafe_b64encode(b"short").decode())
    with pytest.raises(VaultError):
        Vault.parse("")


def test_json_logs_on_request_keep_secrets_redacted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json as json_module
    import logging

    from partnersync.logs import configure_logging

    monkeypatch.setenv("PARTNERSYNC_LOG_FORMAT", "json")
    log_file = tmp_path / "logs" / "p.log"
    redactor = configure_logging(log_file, "INFO")
    redactor.register("shpat_SECRET_VALUE")
    logging.getLogger("partnersync").info("token is shpat_SECRET_VALUE")
    for handler in logging.getLogger().handlers:
        handler.flush()
    for handler in list(logging.getLogger().handlers):
        if getattr(handler, "_partnersync", False):  # the file handler this test added
            logging.getLogger().removeHandler(handler)
            handler.close()
    [line] = log_file.read_text().splitlines()
    entry = json_module.loads(line)
    assert (entry["level"], entry["logger"], entry["message"]) == (
        "INFO",
        "partnersync",
        "token is ***",
    )
