"""The Shopify connector against respx-faked GraphQL: paging, filters, throttling, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from partnersync.auth.vault import Vault
from partnersync.clock import FakeClock
from partnersync.connectors.base import AccountInfo
from partnersync.connectors.shopify import SHOPIFY, access_token_auth, queries
from partnersync.connectors.shopify.connector import ShopifyConnector
from partnersync.connectors.shopify.cost import requested_cost
from partnersync.errors import AuthenticationError, BadResponseError, CapabilityError
from partnersync.sync.engine import PullEngine, PullOptions
from partnersync.sync.store import HubStore

pytestmark = pytest.mark.anyio

BASE = "https://acme.myshopify.com"
ENDPOINT = f"{BASE}/admin/api/2026-10/graphql.json"


def cost(requested: int = 100, available: float = 900.0, actual: int | None = 50) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": 1000.0,
                "currentlyAvailable": available,
                "restoreRate": 50.0,
            },
        }
    }


SHOP = httpx.Response(
    200, json={"data": {"shop": {"name": "Acme", "currencyCode": "USD"}}, "extensions": cost(1)}
)


def product(number: int, *, more_variants: bool = False) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/Product/{number}",
        "title": f"P{number}",
        "handle": f"p{number}",
        "status": "ACTIVE",
        "vendor": "V",
        "productType": "T",
        "descriptionHtml": "",
        "tags": [],
        "createdAt": "2026-01-01T00:00:00Z",
        "updatedAt": f"2026-01-01T00:00:{number:02d}Z",
        "options": [],
        "variants": {
            "pageInfo": {
                "hasNextPage": more_variants,
                "endCursor": "v1" if more_variants else None,
            },
            "nodes": [variant(number * 100)],
        },
    }


def variant(number: int) -> dict[str, Any]:
    return {
        "id": f"gid://shopify/ProductVariant/{number}",
        "sku": f"SKU{number}",
        "barcode": None,
        "title": "Default",
        "price": "1.00",
        "compareAtPrice": None,
        "position": 1,
        "updatedAt": "2026-01-01T00:00:00Z",
        "selectedOptions": [],
        "inventoryItem": {"id": f"gid://shopify/InventoryItem/{number}"},
    }


def products_page(numbers: list[int], cursor: str | None, **kw: Any) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "data": {
                "products": {
                    "pageInfo": {"hasNextPage": cursor is not None, "endCursor": cursor},
                    "nodes": [product(n, **kw) for n in numbers],
                }
            },
            "extensions": cost(),
        },
    )


def sent(call: Any) -> dict[str, Any]:
    return json.loads(call.request.content)


@pytest.fixture
def mock() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=True) as router:
        yield router


def connector(clock: FakeClock | None = None, **options: Any) -> ShopifyConnector:
    """A connector that pages (these tests script the paged requests; bulk has its own)."""
    return ShopifyConnector(
        AccountInfo("acme", "shopify", BASE, options={"bulk": "never", **options}),
        auth=access_token_auth({"access_token": "shpat_x"}),
        clock=clock or FakeClock(),
    )


async def test_pages_follow_end_cursor_to_the_end(mock: respx.MockRouter) -> None:
    route = mock.post(ENDPOINT).mock(
        side_effect=[
            SHOP,
            products_page([1, 2], "c1"),
            products_page([3, 4], "c2"),
            products_page([5], None),
        ]
    )
    async with connector() as shop:
        pages = [page async for page in shop.pull("products")]
    assert [len(p.records) for p in pages] == [2, 2, 1]
    bodies = [sent(call) for call in route.calls[1:]]
    assert [b["variables"].get("after") for b in bodies] == [None, "c1", "c2"]
    assert all(b["variables"]["first"] <= 250 for b in bodies)
    assert route.calls[0].request.headers["X-Shopify-Access-Token"] == "shpat_x"


async def test_product_with_more_variants_is_completed_through_node_queries(
    mock: respx.MockRouter,
) -> None:
    more = httpx.Response(
        200,
        json={
            "data": {
                "node": {
                    "variants": {
                        "pageInfo": {"hasNextPage": False, "endCursor": "v2"},
                        "nodes": [variant(7), variant(8)],
                    }
                }
            },
            "extensions": cost(),
        },
    )
    route = mock.post(ENDPOINT).mock(
        side_effect=[SHOP, products_page([1], None, more_variants=True), more]
    )
    async with connector() as shop:
        [page] = [page async for page in shop.pull("products")]
    assert len(page.records[0]["variants"]["nodes"]) == 3
    follow = sent(route.calls[2])
    assert follow["variables"] == {"id": "gid://shopify/Product/1", "first": 250, "after": "v1"}
    assert "ProductVariants" in follow["query"]


async def test_incremental_filter_is_the_cursor_minus_the_overlap(
    mock: respx.MockRouter, tmp_path: Path, vault: Vault
) -> None:
    store = HubStore.open(f"sqlite:///{tmp_path / 'hub.db'}", vault)
    store.cursors.put("acme", "products", "2026-03-01T12:00:00+00:00", run_id=0)
    route = mock.post(ENDPOINT).mock(side_effect=[SHOP, products_page([1], None)])
    async with connector() as shop:
        summary = await PullEngine(store).pull(
            shop,
            SHOPIFY.mappers["products"],
            "products",
            options=PullOptions(overlap=timedelta(seconds=120)),
        )
    assert sent(route.calls[1])["variables"]["query"] == "updated_at:>='2026-03-01T11:58:00Z'"
    assert summary.since == datetime(2026, 3, 1, 11, 58, tzinfo=UTC)
    assert summary.status == "succeeded"
    # The record is dated before the window Shopify was asked for: stored, but it must not move
    # the cursor backwards or forwards.
    assert store.cursors.get("acme", "products") == "2026-03-01T12:00:00+00:00"
    assert store.runs.get(summary.run_id)["out_of_window"] == 1  # type: ignore[index]
    store.close()


@pytest.mark.parametrize("status", [200, 429])
async def test_throttled_waits_until_the_bucket_holds_the_query_cost(
    mock: respx.MockRouter, status: int
) -> None:
    clock = FakeClock()
    shop = connector(clock)
    variables = {"variantsFirst": shop.nested_first["products"], "query": None}
    requested = requested_cost(
        queries.PRODUCTS, {**variables, "first": shop.page_size(queries.PRODUCTS, variables)}
    )
    full_bucket = httpx.Response(
        200,
        json={
            "data": {"shop": {"name": "A", "currencyCode": "USD"}},
            "extensions": cost(1, available=1000.0),
        },
    )
    throttled = httpx.Response(
        status,
        json={
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": cost(requested=requested, available=100.0, actual=None),
        },
    )
    route = mock.post(ENDPOINT).mock(side_effect=[full_bucket, throttled, products_page([1], None)])
    async with shop:
        pages = [page async for page in shop.pull("products")]
    assert len(pages) == 1
    assert route.call_count == 3
    # One wait of (requested - 100 available) / 50 per second plus this client's own jitter
    # (50 ms up to a tenth of the wait more), and not a second more in total.
    advertised = (requested - 100) / 50
    assert len(clock.sleeps) == 1
    assert advertised + 0.05 <= clock.sleeps[0] <= advertised + 0.05 + 0.1 * advertised + 0.01
    assert shop.throttled == 1


async def test_pacing_waits_before_sending_when_the_bucket_is_short(mock: respx.MockRouter) -> None:
    low = httpx.Response(
        200,
        json={
            "data": {"shop": {"name": "A", "currencyCode": "USD"}},
            "extensions": cost(1, available=10.0),
        },
    )
    route = mock.post(ENDPOINT).mock(side_effect=[low, products_page([1], None)])
    clock = FakeClock()
    shop = connector(clock, max_query_cost=300)
    async with shop:
        [_ async for _ in shop.pull("products")]
    requested = requested_cost(queries.PRODUCTS, sent(route.calls[1])["variables"])
    assert requested <= 300
    assert clock.sleeps == [pytest.approx((requested - 10) / 50, abs=0.05)]


async def test_5xx_is_retried_then_succeeds(mock: respx.MockRouter) -> None:
    route = mock.post(ENDPOINT).mock(side_effect=[httpx.Response(502), httpx.Response(503), SHOP])
    clock = FakeClock()
    async with connector(clock) as shop:
        assert await shop.check() == "Acme (USD)"
    assert route.call_count == 3
    assert len(clock.sleeps) == 2


async def test_401_fails_at_once_with_the_authentication_error(mock: respx.MockRouter) -> None:
    route = mock.post(ENDPOINT).mock(
        return_value=httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
    )
    clock = FakeClock()
    async with connector(clock) as shop:
        with pytest.raises(AuthenticationError):
            await shop.check()
    assert route.call_count == 1
    assert clock.sleeps == []


@pytest.mark.parametrize(
    "body",
    [b"<html>oops</html>", b'{"data": {"products": {"nodes": []}}}', b"[]", b'{"nodata": true}'],
)
async def test_malformed_body_gives_the_bad_response_error(
    mock: respx.MockRouter, body: bytes
) -> None:
    mock.post(ENDPOINT).mock(side_effect=[SHOP, httpx.Response(200, content=body)])
    async with connector() as shop:
        with pytest.raises(BadResponseError):
            [_ async for _ in shop.pull("products")]


async def test_undeclared_entity_is_refused_before_any_request() -> None:
    with respx.mock(assert_all_called=False) as router:
        route = router.post(ENDPOINT)
        async with connector() as shop:
            with pytest.raises(CapabilityError, match="customers"):
                shop.pull("customers")
        assert route.call_count == 0


def _count_answer(count: int) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "data": {"productsCount": {"count": count, "precision": "EXACT"}},
            "extensions": cost(2),
        },
    )


@pytest.mark.parametrize(("count", "how"), [(1999, "paged"), (2000, "bulk")])
async def test_a_pull_goes_bulk_from_the_threshold_by_shopifys_count(
    mock: respx.MockRouter, count: int, how: str
) -> None:
    route = mock.post(ENDPOINT).mock(side_effect=[_count_answer(count)])
    shop = connector(bulk="auto")
    since = datetime(2025, 3, 1, tzinfo=UTC)  # far back: worth counting
    plan = await shop.plan_pull("products", since=since)
    assert plan.how == how
    assert plan.sorted_by_cursor is (how == "paged")
    asked = sent(route.calls[0])
    assert "productsCount" in asked["query"]
    assert asked["variables"] == {"query": "updated_at:>='2025-03-01T00:00:00Z'"}
    await shop.aclose()


async def test_a_recent_window_pages_without_counting(mock: respx.MockRouter) -> None:
    clock = FakeClock()
    shop = connector(clock, bulk="auto")
    plan = await shop.plan_pull("products", since=clock.now() - timedelta(minutes=10))
    assert plan.how == "paged"
    assert not mock.calls  # no count request for a ten-minute window
    await shop.aclose()
