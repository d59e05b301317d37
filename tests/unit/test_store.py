"""The hub store on SQLite and PostgreSQL: migrations, page commits, encryption at rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import text
from sqlmodel import SQLModel

from partnersync.auth.vault import Vault
from partnersync.sync.store import DeadLetter, HubStore, MappedRecord, content_hash


def record(
    external_id: str, payload: str, stamp: str = "2026-01-01T00:00:00+00:00"
) -> MappedRecord:
    data = payload.encode()
    return MappedRecord(external_id, data, content_hash(data), stamp)


def commit(store: HubStore, run_id: int, entity: str, records: list[MappedRecord], **kw: object):  # type: ignore[no-untyped-def]
    return store.records.commit_page(
        run_id=run_id,
        account="shop",
        entity=entity,
        page=1,
        requests=1,
        records=records,
        dead_letters=kw.get("dead_letters", []),  # type: ignore[arg-type]
        out_of_window=0,
        cursor=kw.get("cursor"),  # type: ignore[arg-type]
    )


def start(store: HubStore, entity: str = "products") -> int:
    return store.runs.start(
        account="shop", entity=entity, direction="pull", mode="full", since=None, cursor_before=None
    )


def test_migrations_produce_exactly_the_declared_tables(store: HubStore) -> None:
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == []


def head_revision() -> str:
    from importlib import resources

    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("partnersync.sync").joinpath("migrations"))
    )
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def test_reopening_an_existing_hub_stays_at_head(
    store: HubStore, database_url: str, vault: Vault
) -> None:
    again = HubStore.open(database_url, vault)
    with again.engine.connect() as connection:
        version = connection.execute(text("select version_num from alembic_version")).scalar()
    assert version == head_revision()
    again.close()


def test_a_hub_from_the_first_release_upgrades_with_its_rows(tmp_path: Path, vault: Vault) -> None:
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    from partnersync.sync.store import make_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    config = Config()
    config.set_main_option(
        "script_location", str(resources.files("partnersync.sync").joinpath("migrations"))
    )
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        connection.execute(
            text(
                "insert into dead_letters (run_id, account, entity, field, reason, error_class,"
                " page, payload, payload_hash, created_at) values"
                " (1, 'shop', 'orders', 'total', 'bad', 'MappingError', 1, 'x', 'h', 'now')"
            )
        )
    engine.dispose()
    hub = HubStore.open(url, vault)
    [letter] = hub.dead_letters.unresolved()
    assert (letter["field"], letter["direction"], letter["source_ref"]) == ("total", "pull", None)
    hub.close()


def test_page_commit_creates_updates_and_skips_unchanged(store: HubStore) -> None:
    run = start(store)
    first = commit(
        store, run, "products", [record("a", '{"v":1}'), record("b", '{"v":1}')], cursor="c1"
    )
    assert (first.created, first.updated, first.unchanged) == (2, 0, 0)
    second = commit(
        store, run, "products", [record("a", '{"v":1}'), record("b", '{"v":2}')], cursor="c2"
    )
    assert (second.created, second.updated, second.unchanged) == (0, 1, 1)
    assert store.records.count("products") == 2
    assert store.cursors.get("shop", "products") == "c2"
    assert store.records.find("shop", "products", "b")["data"] == {"v": 2}  # type: ignore[index]
    # Several changed records in one page: each gets its own new content (one statement).
    third = commit(
        store, run, "products", [record("a", '{"v":3}'), record("b", '{"v":4}')], cursor="c3"
    )
    assert (third.created, third.updated, third.unchanged) == (0, 2, 0)
    assert store.records.find("shop", "products", "a")["data"] == {"v": 3}  # type: ignore[index]
    assert store.records.find("shop", "products", "b")["data"] == {"v": 4}  # type: ignore[index]
    run_row = store.runs.get(run)
    assert run_row is not None
    assert (run_row["created"], run_row["updated"], run_row["unchanged"], run_row["pages"]) == (
        2,
        3,
        1,
        3,
    )


def test_dead_letters_keep_the_payload_encrypted(store: HubStore) -> None:
    run = start(store, "orders")
    letter = DeadLetter(
        "o1", "total", "not a decimal", "MappingError", b'{"email":"pii@example.com"}'
    )
    outcome = commit(store, run, "orders", [], dead_letters=[letter])
    assert outcome.dead_lettered == 1
    [listed] = store.dead_letters.unresolved()
    assert (listed["external_id"], listed["field"], listed["reason"]) == (
        "o1",
        "total",
        "not a decimal",
    )
    assert "payload" not in listed
    assert store.dead_letters.payload(listed["id"]) == {"email": "pii@example.com"}


def test_orders_and_secrets_are_unreadable_in_the_sqlite_files(
    tmp_path: Path, vault: Vault
) -> None:
    hub = HubStore.open(f"sqlite:///{tmp_path / 'hub.db'}", vault)
    hub.accounts.save(
        name="shop",
        platform="shopify",
        base_url="https://x.example",
        api_version=None,
        options={},
        secrets={"access_token": "shpat_CANARY_TOKEN"},
    )
    run = start(hub, "orders")
    commit(hub, run, "orders", [record("o1", '{"email":"canary-pii@example.com"}')])
    commit(hub, run, "products", [record("p1", '{"title":"visible"}')])
    assert hub.records.find("shop", "orders", "o1")["data"] == {"email": "canary-pii@example.com"}  # type: ignore[index]
    assert hub.accounts.secrets("shop") == {"access_token": "shpat_CANARY_TOKEN"}
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("hub.db*"))
    assert b"shpat_CANARY_TOKEN" not in raw
    assert b"canary-pii@example.com" not in raw
    assert b"visible" in raw  # products are stored in clear: the scan does see plaintext
    hub.close()


def test_sqlite_connections_use_wal(tmp_path: Path, vault: Vault) -> None:
    hub = HubStore.open(f"sqlite:///{tmp_path / 'hub.db'}", vault)
    with hub.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA busy_timeout")).scalar() == 10000
    hub.close()


def test_accounts_crud_never_returns_secrets(store: HubStore) -> None:
    store.accounts.save(
        name="shop",
        platform="shopify",
        base_url="https://x.example",
        api_version="2026-10",
        options={"pace": True},
        secrets={"access_token": "t0ken-value"},
    )
    listed = store.accounts.every()
    assert [a["name"] for a in listed] == ["shop"]
    assert "t0ken-value" not in repr(listed)
    assert store.accounts.remove("shop") is True
    assert store.accounts.remove("shop") is False


@pytest.mark.parametrize("entity", ["products", "orders"])
def test_iter_records_streams_decrypted_rows(store: HubStore, entity: str) -> None:
    run = start(store, entity)
    commit(store, run, entity, [record(str(i), f'{{"i":{i}}}') for i in range(5)])
    assert sorted(r["i"] for r in store.records.every(entity)) == [0, 1, 2, 3, 4]


def test_the_head_read_from_the_migration_files_is_alembics() -> None:
    """Opening a hub at head skips Alembic; the head it compares with must be Alembic's own."""
    from partnersync.sync.store.unit import head_revision as read_head

    assert read_head() == head_revision()


def test_a_hub_behind_head_is_still_migrated(database_url: str, vault: Vault) -> None:
    store = HubStore.open(database_url, vault)
    with store.engine.begin() as connection:
        connection.execute(text("update alembic_version set version_num = '0008'"))
        for column in ("resume_token", "walk_started_at", "walk_since"):  # as before 0009
            connection.execute(text(f"alter table runs drop column {column}"))
    store.close()
    again = HubStore.open(database_url, vault)  # 0008 → head adds the column back
    with again.engine.connect() as connection:
        version = connection.execute(text("select version_num from alembic_version")).scalar()
        columns = {c["name"] for c in sa_inspect(connection).get_columns("runs")}
    assert version == head_revision()
    assert "walk_since" in columns
    again.close()
