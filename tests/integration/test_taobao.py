"""Taobao/Tmall TOP end to end against its loopback gateway: signing, windows, limits, stock."""

from __future__ import annotations

import base64
import secrets
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from partnersync.auth.vault import Vault
from partnersync.config import init_project
from partnersync.connectors.taobao.mappers import TaobaoStockImportMapper, TaobaoTradeImportMapper
from partnersync.mapping.mapper import MapContext
from partnersync.mapping.model import FinancialStatus, FulfillmentStatus
from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.taobao import TaobaoSandbox, gmt8, parse_gmt8
from partnersync.service import Partnersync
from partnersync.sync.push import PushOptions
from tests.conftest import make_service
from tests.integration.push_world import add_files, hub
from tests.integration.test_crash_resume import run_cli

pytestmark = pytest.mark.anyio
FAST = {"qps": 1000}


def add_seller(
    service: Partnersync,
    gateway: TaobaoSandbox,
    *,
    options: dict[str, Any] | None = None,
    **extra: str,
) -> None:
    service.add_account(
        name="tb",
        platform="taobao",
        base_url=gateway.url,
        secrets={**gateway.credentials(), **extra},
        options={**FAST, **(options or {})},
        allow_loopback=True,
    )


@pytest.fixture
def gateway() -> Iterator[TaobaoSandbox]:
    with TaobaoSandbox() as sandbox:
        yield sandbox


@pytest.fixture
def svc(tmp_path: Path, vault: Vault, gateway: TaobaoSandbox) -> Iterator[Partnersync]:
    service = hub(tmp_path / "project", vault)
    add_seller(service, gateway)
    yield service
    service.close()


def calls(gateway: TaobaoSandbox, op: str) -> list[dict[str, Any]]:
    return [e for e in gateway.log.entries if e.get("op") == op]


async def test_trades_are_walked_in_windows_of_a_day_from_the_last_page_back(
    tmp_path: Path, vault: Vault
) -> None:
    with TaobaoSandbox(items=5, trades=250, days=2) as busy:
        service = hub(tmp_path / "p", vault)
        add_seller(service, busy)

        summary = await service.pull("tb", "orders")

        assert summary.status == "succeeded", summary.error
        assert summary.progress.created == 250
        listed = calls(busy, "taobao.trades.sold.increment.get")
        for entry in listed:
            start = parse_gmt8(entry["params"]["start_modified"])
            end = parse_gmt8(entry["params"]["end_modified"])
            assert timedelta(0) <= end - start <= timedelta(days=1)
            assert entry["params"]["page_size"] == "100"
        pages = [int(e["params"]["page_no"]) for e in listed if e.get("records")]
        assert pages != sorted(pages)  # a busy window is read from its last page backwards
        stored = sorted(r.external_id for r in service.store.records.of("tb", "orders"))
        assert stored == sorted(str(t) for t in busy.data.trades)
        service.close()


async def test_an_incremental_pull_reads_only_changed_trades(
    svc: Partnersync, gateway: TaobaoSandbox
) -> None:
    await svc.pull("tb", "orders")
    changed = sorted(gateway.data.trades)[:2]
    # Changed five minutes ago: the last window ends a few minutes behind now, on purpose.
    moment = gmt8(gateway.data.now() - timedelta(minutes=5))
    for tid in changed:
        gateway.data.trades[tid].update(status="TRADE_FINISHED", modified=moment)
    gateway.log.clear()

    second = await svc.pull("tb", "orders")

    detailed = {e["params"]["tid"] for e in calls(gateway, "taobao.trade.fullinfo.get")}
    assert {str(t) for t in changed} <= detailed
    # Besides them only what the overlap before the cursor re-reads (hash-skipped).
    newest = max(
        parse_gmt8(t["modified"]) for i, t in gateway.data.trades.items() if i not in changed
    )
    floor = newest - timedelta(seconds=120)
    overlap = {
        str(i)
        for i, t in gateway.data.trades.items()
        if i not in changed and parse_gmt8(t["modified"]) >= floor
    }
    assert detailed == {str(t) for t in changed} | overlap
    assert second.progress.updated == 2


async def test_items_come_with_their_skus_and_stock(
    svc: Partnersync, gateway: TaobaoSandbox
) -> None:
    products = await svc.pull("tb", "products")
    stock = await svc.pull("tb", "inventory")

    assert products.progress.created == len(gateway.data.items)
    levels = {r.data["sku"]: r.data["available"] for r in svc.store.records.of("tb", "inventory")}
    assert levels == {sku: gateway.data.sku_quantity(sku) for sku in gateway.data.outer_ids()}
    assert stock.status == "succeeded"


async def test_a_wrong_signature_is_an_authentication_error(
    tmp_path: Path, vault: Vault, gateway: TaobaoSandbox
) -> None:
    service = hub(tmp_path / "p", vault)
    add_seller(service, gateway, app_secret="not-the-secret")

    summary = await service.pull("tb", "products")

    assert summary.status == "failed"
    assert "AuthenticationError" in (summary.error or "")
    assert "Invalid Signature" in (summary.error or "")
    service.close()


async def test_a_timestamp_eleven_minutes_off_is_refused(gateway: TaobaoSandbox) -> None:
    from datetime import UTC, datetime

    from partnersync.auth.top import TopSignAuth
    from partnersync.connectors.base import AccountInfo
    from partnersync.connectors.taobao import TaobaoConnector
    from partnersync.errors import BadRequestError

    skewed = TopSignAuth(
        gateway.app_key,
        gateway.app_secret,
        gateway.session,
        now=lambda: datetime.now(UTC) + timedelta(minutes=11),
    )
    account = AccountInfo("tb", "taobao", gateway.url, options=FAST)
    async with TaobaoConnector(account, auth=skewed) as connector:
        with pytest.raises(BadRequestError, match="clock"):
            await connector.check()


async def test_app_call_limited_waits_out_the_ban(tmp_path: Path, vault: Vault) -> None:
    with TaobaoSandbox(items=12, trades=0, qps=4) as limited:
        service = hub(tmp_path / "p", vault)
        add_seller(service, limited)

        summary = await service.pull("tb", "products")

        assert summary.status == "succeeded", summary.error
        entries = limited.log.entries
        banned = [i for i, e in enumerate(entries) if e.get("error") == "7"]
        assert banned
        for index in banned:
            # "This ban will last for 1 more seconds": nothing is sent for N+1 seconds.
            assert entries[index + 1]["t"] - entries[index]["t"] >= 2.0
        service.close()


async def test_a_refused_call_is_not_retried(svc: Partnersync, gateway: TaobaoSandbox) -> None:
    from partnersync.connectors.taobao import TaobaoConnector
    from partnersync.errors import BadRequestError

    connector, _ = svc.connector("tb")
    assert isinstance(connector, TaobaoConnector)
    async with connector:
        with pytest.raises(BadRequestError, match="page_size"):
            await connector.call("taobao.items.onsale.get", page_no=1, page_size=500)
    assert len(gateway.log.entries) == 1


async def test_stock_from_a_csv_reaches_taobao_skus_once_in_calls_of_twenty(
    tmp_path: Path, vault: Vault, gateway: TaobaoSandbox
) -> None:
    with FileSandbox(directory=tmp_path / "drop", skus=0, files=0) as drop:
        service = hub(tmp_path / "p", vault)
        add_seller(service, gateway)
        add_files(service, "erp", drop)
        wanted = {sku: (n * 5) % 17 + 2 for n, sku in enumerate(gateway.data.outer_ids())}
        drop.write(
            "inventory/s.csv",
            [{"sku": s, "location": "Hangzhou DC", "available": q} for s, q in wanted.items()],
        )
        await service.pull("erp", "inventory")

        first = await service.push("tb", "inventory", PushOptions(sources=("erp",), buffer=2))

        assert first.status == "succeeded", (first.error, first.plan.problems)
        assert {s: gateway.data.sku_quantity(s) for s in wanted} == {
            s: q - 2 for s, q in wanted.items()
        }
        writes = [e for e in gateway.log.entries if e.get("write")]
        assert all(e.get("items", 1) <= 20 for e in writes)
        again = await service.push("tb", "inventory", PushOptions(sources=("erp",), buffer=2))
        assert again.plan.writes == []
        service.close()


def test_a_pull_killed_at_a_window_boundary_resumes_without_loss(tmp_path: Path) -> None:
    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    project = tmp_path / "project"
    init_project(project)
    with TaobaoSandbox(items=3, trades=60, days=4) as gateway:
        service = make_service(
            project, Vault.parse(keys), database_url=f"sqlite:///{project / 'hub.db'}"
        )
        add_seller(service, gateway, options={"page_size": 10})
        service.close()
        # Pages are committed one by one; the kill comes after the second page commit.
        killed = run_cli(
            project, keys, "sync", "pull", "tb", "orders", failpoints="after_page_commit:2"
        )
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        resumed = run_cli(project, keys, "sync", "pull", "tb", "orders", "--json")
        assert resumed.returncode == 0, resumed.stderr

        hub_service = make_service(
            project, Vault.parse(keys), database_url=f"sqlite:///{project / 'hub.db'}"
        )
        stored = sorted(r.external_id for r in hub_service.store.records.of("tb", "orders"))
        assert stored == sorted(str(t) for t in gateway.data.trades)
        hub_service.close()


def test_a_trade_maps_with_times_converted_from_gmt_plus_8() -> None:
    context = MapContext("tb", "taobao", {"currency": "CNY"})
    trade = {
        "tid": 2231958349876,
        "status": "WAIT_SELLER_SEND_GOODS",
        "created": "2026-11-11 00:00:05",
        "modified": "2026-11-11 00:10:00",
        "payment": "199.00",
        "post_fee": "0.00",
        "buyer_nick": "tb_buyer",
        "receiver_name": "张三",
        "receiver_city": "杭州市",
        "receiver_mobile": "13800000000",
        "orders": {
            "order": [
                {
                    "oid": 2231958349877,
                    "num_iid": 6001,
                    "sku_id": 4001,
                    "outer_sku_id": "TB-RED-M",
                    "title": "连衣裙",
                    "num": 1,
                    "price": "199.00",
                }
            ]
        },
    }
    order = TaobaoTradeImportMapper(context).map(trade)
    assert order.created_at.isoformat() == "2026-11-10T16:00:05+00:00"
    assert (order.financial_status, order.fulfillment_status) == (
        FinancialStatus.PAID,
        FulfillmentStatus.UNFULFILLED,
    )
    [line] = order.line_items
    assert (line.sku, line.variant_id, str(line.unit_price.amount)) == (
        "TB-RED-M",
        "6001:4001",
        "199.00",
    )
    closed = TaobaoTradeImportMapper(context).map({**trade, "status": "TRADE_CLOSED_BY_TAOBAO"})
    assert closed.cancelled_at == closed.updated_at
    level = TaobaoStockImportMapper(context).map(
        {
            "num_iid": 6001,
            "sku_id": 4001,
            "outer_id": "TB-RED-M",
            "quantity": 3,
            "modified": gmt8(order.updated_at),
        }
    )
    assert (level.sku, level.available, level.origin.external_id) == ("TB-RED-M", 3, "6001:4001")


async def test_one_stock_file_feeds_shopify_woocommerce_and_taobao_in_one_job(
    tmp_path: Path, vault: Vault, gateway: TaobaoSandbox
) -> None:
    from partnersync.sandbox.woocommerce import WooCommerceSandbox
    from tests.integration.push_world import add_shop, avail, new_shop, skus
    from tests.integration.test_woocommerce import add_store

    shop = new_shop()
    with (
        WooCommerceSandbox() as store,
        FileSandbox(directory=tmp_path / "drop", skus=0, files=0) as drop,
    ):
        try:
            shared = skus(shop, 4)  # the same catalogue on all three channels
            simple = sorted(i for i, p in store.data.products.items() if p["type"] == "simple")
            for product_id, sku in zip(simple, shared, strict=False):
                store.data.update_product(product_id, {"sku": sku})
            tb_skus = [s for item in gateway.data.items.values() for s in item["skus"]]
            for sku_row, sku in zip(tb_skus, shared, strict=False):
                sku_row["outer_id"] = sku
            jobs = {
                "stock": {
                    "entity": "inventory",
                    "sources": ["erp"],
                    "targets": ["shop", "woo", "tb"],
                    "buffer": 2,
                    "allocation_by_target": {"woo": "0.5", "tb": "0.25"},
                }
            }
            service = hub(tmp_path / "p", vault, jobs=jobs)
            add_shop(service, "shop", shop)
            add_store(service, "woo", store)
            add_seller(service, gateway)
            add_files(service, "erp", drop)
            counts = dict(zip(shared, (1, 7, 12, 30), strict=True))
            drop.write(
                "inventory/s.csv",
                [
                    {"sku": s, "location": "Main warehouse", "available": n}
                    for s, n in counts.items()
                ],
            )

            first = [r for r in await service.run_job("stock") if hasattr(r, "plan")]

            def offered(share: int) -> dict[str, int]:
                return {s: max(0, n - 2) // share for s, n in counts.items()}

            assert {s: avail(shop, s) for s in shared} == offered(1)
            assert {s: store.data.stock_of(s) for s in shared} == offered(2)
            assert {s: gateway.data.sku_quantity(s) for s in shared} == offered(4)
            assert [p.status for p in first] == ["succeeded"] * 3
            again = [r for r in await service.run_job("stock") if hasattr(r, "plan")]
            assert [p.plan.writes for p in again] == [[], [], []]
            service.close()
        finally:
            shop.stop()
