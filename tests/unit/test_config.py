"""The project file and base-URL validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from partnersync.config import init_project, load_project, validate_base_url
from partnersync.errors import ConfigError


def test_init_then_load_resolves_paths_against_the_project(tmp_path: Path) -> None:
    init_project(tmp_path)
    project = load_project(tmp_path)
    assert project.database_url == f"sqlite:///{(tmp_path / 'hub.db').resolve()}"
    assert project.key_file == tmp_path / ".partnersync" / "key"
    assert project.overlap_seconds("any") == 120


def test_account_overrides_and_overlap_are_read(tmp_path: Path) -> None:
    (tmp_path / "partnersync.toml").write_text(
        """
[sync]
overlap_seconds = 60
[accounts.shop]
overlap_seconds = 300
[accounts.shop.mapping.products]
vendor = { default = "Acme" }
status = { enum_map = { DRAFT = "active" } }
"""
    )
    project = load_project(tmp_path)
    assert project.overlap_seconds("shop") == 300
    assert project.overlap_seconds("other") == 60
    overrides = project.account("shop").mapping["products"]
    assert overrides["vendor"].default == "Acme"
    assert overrides["status"].enum_map == {"DRAFT": "active"}


def test_unknown_keys_name_where_they_are(tmp_path: Path) -> None:
    (tmp_path / "partnersync.toml").write_text("[hub]\ndatabse = 'x'\n")
    with pytest.raises(ConfigError, match=r"hub\.databse"):
        load_project(tmp_path)


def test_constant_cannot_combine_with_default(tmp_path: Path) -> None:
    (tmp_path / "partnersync.toml").write_text(
        "[accounts.s.mapping.products]\nvendor = { constant = 'A', default = 'B' }\n"
    )
    with pytest.raises(ConfigError, match="constant"):
        load_project(tmp_path)


def test_missing_project_says_to_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="partnersync init"):
        load_project(tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example.com",
        "http://127.0.0.1:8080",
        "https://localhost",
        "https://10.0.0.5",
        "https://169.254.169.254",
        "ftp://shop.example.com",
        "https://user:pass@shop.example.com",
        # loopback and private addresses in the other spellings resolvers accept (T27 part 3)
        "https://2130706433",
        "https://0177.0.0.1",
        "https://0x7f000001",
        "https://127.1",
        "https://[::ffff:127.0.0.1]",
        "https://[::1]",
        "https://100.64.1.1",
        "https://[fd00::1]",
        "https://[fe80::1]",
        "https://0.0.0.0",
        "https://0xa.0.0.1",
        "file:///etc/passwd",
        "gopher://shop.example.com",
    ],
)
def test_unsafe_base_urls_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        validate_base_url(url)


def test_loopback_only_when_allowed_and_https_public_hosts_pass() -> None:
    assert (
        validate_base_url("http://127.0.0.1:8080/", allow_loopback=True) == "http://127.0.0.1:8080"
    )
    assert validate_base_url("https://acme.myshopify.com") == "https://acme.myshopify.com"
    with pytest.raises(ConfigError):
        validate_base_url("http://10.1.1.1", allow_loopback=True)
