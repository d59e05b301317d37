"""One suite, run over every registered connector and its sandbox.

Each later connector is held to it automatically by registering under the
``partnersync.connectors`` entry point.
"""

from __future__ import annotations

import doctest
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from partnersync.auth.vault import Vault
from partnersync.connectors.base import VERBS, AccountInfo, Connector, ConnectorSpec
from partnersync.connectors.registry import ConnectorRegistry
from partnersync.errors import CapabilityError, MappingError
from partnersync.mapping.mapper import MapContext
from partnersync.mapping.model import CANONICAL_MODELS
from partnersync.sandbox.framework import Sandbox
from partnersync.sync.push import EXPORTERS

pytestmark = pytest.mark.anyio

REGISTRY = ConnectorRegistry.from_entry_points()
SPECS = list(REGISTRY)
PAGE_SIZE = 7


def test_the_built_in_connectors_are_registered_through_entry_points() -> None:
    assert "shopify" in REGISTRY.platforms()


@pytest.fixture(params=SPECS, ids=[s.platform for s in SPECS])
def spec(request: pytest.FixtureRequest) -> ConnectorSpec:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def sandbox(spec: ConnectorSpec) -> Iterator[Sandbox]:
    assert spec.sandbox is not None, f"{spec.platform} ships no sandbox"
    with spec.sandbox(fast=True) as running:
        yield running


def make_connector(spec: ConnectorSpec, sandbox: Sandbox) -> Connector:
    info = AccountInfo(
        name="contract",
        platform=spec.platform,
        base_url=sandbox.url,
        api_version=spec.default_api_version,
        options={"page_size": PAGE_SIZE, "qps": 1000},
    )
    return spec.connector(info, auth=spec.auth(sandbox.credentials()))


def pullable(spec: ConnectorSpec) -> list[str]:
    return [name for name, cap in spec.connector.capabilities.entities.items() if cap.pull]


def test_every_pullable_entity_has_a_mapper_onto_its_canonical_model(spec: ConnectorSpec) -> None:
    for entity in pullable(spec):
        assert entity in spec.mappers, f"{spec.platform} has no mapper for {entity}"
        assert spec.mappers[entity].model is CANONICAL_MODELS[entity]


def test_cursor_field_exists_in_the_canonical_model(spec: ConnectorSpec) -> None:
    for entity, capability in spec.connector.capabilities.entities.items():
        assert capability.cursor_field in CANONICAL_MODELS[entity].model_fields


async def test_declared_entities_pull_every_sandbox_record_into_valid_canonical_records(
    spec: ConnectorSpec, sandbox: Sandbox
) -> None:
    async with make_connector(spec, sandbox) as connector:
        for entity in pullable(spec):
            records: list[dict[str, Any]] = []
            pages = 0
            with anyio.fail_after(60):  # pagination must terminate
                async for page in connector.pull(entity):
                    pages += 1
                    assert len(page.records) > 0 or pages == 1
                    records.extend(page.records)
            assert records, f"{spec.platform} sandbox has no {entity}"
            assert pages > 1, "the sandbox must need more than one page at the contract page size"
            mapper = spec.mappers[entity](
                MapContext("contract", spec.platform, connector.mapping_settings())
            )
            ids = set()
            for raw in records:
                try:
                    canonical = mapper.map(raw)
                except MappingError as exc:  # pragma: no cover - reported as the failure
                    pytest.fail(f"sandbox fixture does not map: {exc}")
                ids.add(canonical.origin.external_id)
                assert connector.record_updated_at(entity, raw) is not None
            assert len(ids) == len(records), "a record was returned twice in one pull"


async def test_an_incremental_pull_from_the_future_returns_nothing(
    spec: ConnectorSpec, sandbox: Sandbox
) -> None:
    future = datetime.now(UTC) + timedelta(days=1)
    async with make_connector(spec, sandbox) as connector:
        for entity in pullable(spec):
            records = [
                r async for page in connector.pull(entity, since=future) for r in page.records
            ]
            assert records == []


async def test_undeclared_entities_are_refused_before_any_io(
    spec: ConnectorSpec, sandbox: Sandbox
) -> None:
    async with make_connector(spec, sandbox) as connector:
        before = len(sandbox.log)
        with pytest.raises(CapabilityError):
            connector.pull("no-such-entity")
        assert len(sandbox.log) == before


def documented_minimal_connector() -> type[Connector]:
    """The ``TinyConnector`` of the ``connectors.base`` docs, run from the docstring itself."""
    from partnersync.connectors import base

    namespace: dict[str, Any] = dict(vars(base))
    test = doctest.DocTestParser().get_doctest(base.__doc__ or "", namespace, "base", None, 0)
    for example in test.examples:
        if "class TinyConnector" in example.source:
            exec(compile(example.source, "connectors.base docs", "exec"), namespace)
    tiny: type[Connector] = namespace["TinyConnector"]
    return tiny


async def test_the_documented_minimal_connector_keeps_the_contract() -> None:
    tiny = documented_minimal_connector()
    async with tiny(AccountInfo("acme", "tiny", "http://127.0.0.1")) as connector:
        with pytest.raises(CapabilityError):
            connector.pull("no-such-entity")  # refused on the call, before any I/O
        pages = [page async for page in connector.pull("products")]
    assert [page.records for page in pages] == [[{"id": "1"}]]


def test_every_declared_writer_has_an_exporter_and_sane_limits(spec: ConnectorSpec) -> None:
    for entity, capability in spec.connector.capabilities.entities.items():
        if capability.writer is None:
            continue
        assert entity in EXPORTERS, f"{spec.platform} declares a writer for {entity}: no exporter"
        if entity == "products":  # a product write sends a payload its export mapper builds
            assert spec.export_mappers.get(entity), f"{spec.platform}: no product export mapper"
        assert capability.writer.verbs <= VERBS
        assert capability.writer.batch_limit >= 1
        # An absolute update is safe to repeat; a create must be de-duplicated or verified.
        writer = capability.writer
        if "create" in writer.verbs and not (writer.idempotency_keys or writer.verified_by):
            pytest.fail(
                f"{spec.platform}/{entity}: a lost create can be neither replayed nor verified"
            )


STOCK_WRITERS = [
    spec
    for spec in SPECS
    if (capability := spec.connector.capabilities.entities.get("inventory")) is not None
    and capability.writer is not None
]


@pytest.mark.parametrize("spec", STOCK_WRITERS, ids=[s.platform for s in STOCK_WRITERS])
async def test_stock_writes_land_once_in_batches_within_the_declared_limit(
    spec: ConnectorSpec, tmp_path: Path, vault: Vault
) -> None:
    from partnersync.sandbox.files import FileSandbox
    from partnersync.sync.push import PushEngine, PushOptions
    from tests.conftest import make_service

    capability = spec.connector.capabilities.entities["inventory"]
    assert capability.writer is not None
    limit = capability.writer.batch_limit
    asked: list[int] = []

    class Observed(spec.connector):  # type: ignore[name-defined,misc]
        async def set_inventory(self, writes: Any, idempotency_key: str) -> Any:
            asked.append(len(writes))
            return await super().set_inventory(writes, idempotency_key)

    assert spec.sandbox is not None
    with (
        spec.sandbox(fast=True) as sandbox,
        FileSandbox(directory=tmp_path / "drop", skus=0, files=0) as drop,
    ):
        service = make_service(tmp_path / "project", vault)
        service.add_account(
            name="target",
            platform=spec.platform,
            base_url=sandbox.url,
            secrets=sandbox.credentials(),
            options={"qps": 1000},
            allow_loopback=True,
        )
        service.add_account(name="erp", platform="file", base_url=drop.url, secrets={})
        await service.pull("target", "inventory")
        levels = service.store.records.of("target", "inventory")[: limit + 3]
        wanted = {
            (r.data["sku"], r.data.get("location_name") or r.data["location_id"]): (
                r.data["available"] + 1 + n % 3
            )
            for n, r in enumerate(levels)
        }
        rows = [{"sku": s, "location": loc, "available": q} for (s, loc), q in wanted.items()]
        rows.append({"sku": "NO-SUCH-SKU", "location": rows[0]["location"], "available": 5})
        drop.write("inventory/stock.csv", rows)
        await service.pull("erp", "inventory")
        options = PushOptions(sources=("erp",), force=True)
        wired, _ = service.connector("target")

        async with Observed(wired.account, auth=wired.auth) as connector:
            first = await PushEngine(service.store).push(connector, "inventory", options)

        assert first.updated == len(wanted)
        assert max(asked) <= limit
        [unknown] = first.plan.problems  # reported, never created
        assert "NO-SUCH-SKU" in unknown.reason
        await service.pull("target", "inventory", full=True)
        held = {
            (r.data["sku"], r.data.get("location_name") or r.data["location_id"]): r.data[
                "available"
            ]
            for r in service.store.records.of("target", "inventory")
        }
        assert {key: held[key] for key in wanted} == wanted
        again = await service.push("target", "inventory", options)
        assert again.plan.writes == []
        service.close()
