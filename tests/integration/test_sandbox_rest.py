"""The sandbox shop's legacy REST Admin API, read by a plain HTTP client the way REST clients
(dlt's `rest_api` source, tap-shopify's first request) read it: Link-header `page_info` paging,
`limit` bounds, filters, counts, and the 40-request leaky bucket."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.data import gid_number
from tests.conftest import SHOP_TOKEN

HEADERS = {"X-Shopify-Access-Token": SHOP_TOKEN}


@pytest.fixture
def shop() -> Iterator[ShopifySandbox]:
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0) as s:
        yield s


def walk(first_url: str) -> tuple[list[dict[str, object]], int]:
    """Every record by following ``rel="next"``, and the pages it took."""
    records: list[dict[str, object]] = []
    url: str | None = first_url
    pages = 0
    while url:
        answer = httpx.get(url, headers=HEADERS)
        assert answer.status_code == 200, answer.text
        pages += 1
        (listing,) = answer.json().values()
        records.extend(listing)
        link = answer.headers.get("Link")
        url = link.split(";")[0].strip("<>") if link and 'rel="next"' in link else None
    return records, pages


def test_products_and_orders_page_by_link_header_each_once(shop: ShopifySandbox) -> None:
    products, pages = walk(f"{shop.url}/admin/api/2025-07/products.json?limit=25")
    assert len(products) == len(shop.data.tables["products"])
    assert pages == -(-len(products) // 25)
    ids = [p["id"] for p in products]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    first = products[0]
    assert isinstance(first["id"], int)
    assert {"title", "handle", "variants", "updated_at", "product_type"} <= set(first)
    orders, _ = walk(f"{shop.url}/admin/api/2025-07/orders.json?status=any&limit=250")
    assert len(orders) == len(shop.data.tables["orders"])


def test_filters_counts_and_refusals(shop: ShopifySandbox) -> None:
    base = f"{shop.url}/admin/api/2026-10"
    order_id = sorted(shop.data.tables["orders"])[0]
    shop.data.update("orders", order_id, {"cancelledAt": datetime.now(UTC).isoformat()})
    open_orders, _ = walk(f"{base}/orders.json?limit=250")  # status=open by default
    assert len(open_orders) == len(shop.data.tables["orders"]) - 1
    count = httpx.get(f"{base}/orders/count.json?status=any", headers=HEADERS).json()
    assert count == {"count": len(shop.data.tables["orders"])}

    recent = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    touched = shop.data.touch("products", 3)
    changed, _ = walk(f"{base}/products.json?updated_at_min={recent}")
    assert {p["id"] for p in changed} == {gid_number(t) for t in touched}

    too_many = httpx.get(f"{base}/products.json?limit=251", headers=HEADERS)
    assert too_many.status_code == 400
    page = httpx.get(f"{base}/products.json?limit=5", headers=HEADERS)
    next_url = page.headers["Link"].split(";")[0].strip("<>")
    mixed = httpx.get(next_url + "&updated_at_min=2020-01-01", headers=HEADERS)
    assert mixed.status_code == 400  # page_info carries the filters; no others beside it
    assert httpx.get(f"{base}/products.json").status_code == 401


def test_the_leaky_bucket_answers_429_with_retry_after(shop: ShopifySandbox) -> None:
    url = f"{shop.url}/admin/api/2026-10/shop.json"
    answers = [httpx.get(url, headers=HEADERS) for _ in range(45)]
    limits = [a.headers.get("X-Shopify-Shop-Api-Call-Limit") for a in answers]
    assert limits[0] is not None
    assert limits[0].endswith("/40")
    throttled = [a for a in answers if a.status_code == 429]
    assert throttled, "45 requests at once overflow a 40-request bucket"
    assert throttled[0].headers["Retry-After"] == "2.0"
