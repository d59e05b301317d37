"""Shared fixtures: a vault, hub stores on SQLite and (when available) PostgreSQL, the sandbox."""

from __future__ import annotations

import base64
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import partnersync
from partnersync.auth.vault import Vault
from partnersync.config import Project, ProjectConfig
from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from partnersync.sync.store import HubStore


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the package's modules once, before the suite starts the CLI as a subprocess a few
    hundred times: where bytecode is not written on import (PYTHONDONTWRITEBYTECODE is set on our
    machines), every start would compile every module again (~0.2 s each)."""
    import compileall

    compileall.compile_dir(Path(partnersync.__file__).parent, quiet=2)


PG_URL_ENV = "PARTNERSYNC_TEST_PG_URL"
SHOP_TOKEN = "shpat_canary_0123456789abcdef"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def new_vault() -> Vault:
    """A vault with a fresh random key."""
    return Vault.parse("k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())


@pytest.fixture
def vault() -> Vault:
    return new_vault()


def _postgres_url() -> str:
    url = os.environ.get(PG_URL_ENV)
    if not url:
        if os.environ.get("PARTNERSYNC_REQUIRE_PG"):
            pytest.fail(f"{PG_URL_ENV} must be set when PARTNERSYNC_REQUIRE_PG is")
        pytest.skip(f"PostgreSQL not available: set {PG_URL_ENV} (CI does)")
    return url


def _fresh_pg_schema(url: str) -> str:
    """A new schema for one test, so tests never see each other's rows."""
    import psycopg

    schema = "t_" + uuid.uuid4().hex[:12]
    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A hub database URL: a SQLite file, then a PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return _fresh_pg_schema(_postgres_url())


@pytest.fixture
def store(database_url: str, vault: Vault) -> Iterator[HubStore]:
    hub = HubStore.open(database_url, vault)
    yield hub
    hub.close()


@pytest.fixture
def shop() -> Iterator[ShopifySandbox]:
    """A sandbox shop fast enough that pacing never waits (cost rules still apply)."""
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, bucket_size=1000.0) as sandbox:
        yield sandbox


def make_service(
    root: Path, vault: Vault, database_url: str | None = None, **config: object
) -> Partnersync:
    """A service on a project in ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    project = Project(
        root=root,
        config=ProjectConfig.model_validate(config),
        database_override=database_url or f"sqlite:///{root / 'hub.db'}",
    )
    return Partnersync(project, vault=vault)


def wire_shop(service: Partnersync, shop: ShopifySandbox, **options: object) -> Partnersync:
    """Add the account ``shop`` pointing at the sandbox, with connector options."""
    service.add_account(
        name="shop",
        platform="shopify",
        base_url=shop.url,
        secrets={"access_token": SHOP_TOKEN},
        options=options,
        allow_loopback=True,
    )
    return service


@pytest.fixture
def service(
    tmp_path: Path, vault: Vault, database_url: str, shop: ShopifySandbox
) -> Iterator[Partnersync]:
    """A project with the account ``shop`` wired to the sandbox (SQLite and PostgreSQL)."""
    svc = wire_shop(make_service(tmp_path / "project", vault, database_url), shop)
    yield svc
    svc.close()
