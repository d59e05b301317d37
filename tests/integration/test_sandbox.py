"""The sandbox Shopify follows the documented protocol: auth, limits, cost, search, paging."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN

PATH = "/admin/api/2026-10/graphql.json"


@pytest.fixture
def client(shop: ShopifySandbox) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shop.url, headers={"X-Shopify-Access-Token": SHOP_TOKEN}) as http:
        yield http


def gql(client: httpx.Client, query: str, **variables: Any) -> dict[str, Any]:
    response = client.post(PATH, json={"query": query, "variables": variables})
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_bad_token_gets_401(shop: ShopifySandbox) -> None:
    response = httpx.post(
        shop.url + PATH,
        json={"query": "{ shop { name } }"},
        headers={"X-Shopify-Access-Token": "x"},
    )
    assert response.status_code == 401
    assert "Invalid API key or access token" in response.json()["errors"]


def test_unknown_path_is_404(client: httpx.Client) -> None:
    assert client.post("/admin/api/2026-10/products.json", json={}).status_code == 404


def test_requested_cost_matches_the_worked_example_and_is_refunded(client: httpx.Client) -> None:
    body = gql(
        client,
        "{ products(first: 250) { nodes { title variants(first: 5) { nodes { price } } } } }",
    )
    cost = body["extensions"]["cost"]
    # 2 + floor(2 ln 250) = 11 × (1 + 2 + floor(2 ln 5) = 3 × 1)
    assert cost["requestedQueryCost"] == 68
    # The shop has fewer than 250 products: the actual cost is lower, and refunded.
    delivered = len(body["data"]["products"]["nodes"])
    assert delivered < 250
    assert cost["actualQueryCost"] < 68
    status = cost["throttleStatus"]
    assert status["maximumAvailable"] == 1000.0
    assert status["currentlyAvailable"] <= 1000.0


def test_a_query_over_the_single_query_maximum_is_refused(client: httpx.Client) -> None:
    body = gql(
        client,
        "{ products(first: 250) { nodes { variants(first: 250) { nodes { inventoryItem {"
        " inventoryLevels(first: 250) { nodes { location { id } } } } } } } } }",
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "MAX_COST_EXCEEDED"
    assert "data" not in body


def test_page_size_over_250_is_an_error(client: httpx.Client) -> None:
    body = gql(client, "{ locations(first: 251) { nodes { id } } }")
    assert "250" in body["errors"][0]["message"]


def test_invalid_documents_fail_validation_against_the_real_schema(client: httpx.Client) -> None:
    body = gql(client, "{ products(first: 1) { nodes { colour } } }")
    assert "colour" in body["errors"][0]["message"]


def test_updated_at_search_and_keyset_paging_cover_everything_once(
    client: httpx.Client, shop: ShopifySandbox
) -> None:
    products = shop.data.tables["products"]
    cutoff = sorted(p["updatedAt"] for p in products.values())[len(products) // 2]
    expected = {pid for pid, p in products.items() if p["updatedAt"] >= cutoff}
    query = """
      query($after: String, $q: String) {
        products(first: 7, after: $after, query: $q, sortKey: UPDATED_AT) {
          pageInfo { hasNextPage endCursor } nodes { id updatedAt }
        }
      }"""
    seen: list[str] = []
    stamps: list[str] = []
    after = None
    while True:
        page = gql(client, query, after=after, q=f"updated_at:>='{cutoff}'")["data"]["products"]
        seen += [n["id"] for n in page["nodes"]]
        stamps += [n["updatedAt"] for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen))
    assert set(seen) == expected
    assert stamps == sorted(stamps)


def test_the_bucket_throttles_and_reports_how_to_wait() -> None:
    with ShopifySandbox(token=SHOP_TOKEN, bucket_size=20.0, restore_rate=1.0) as tiny:
        http = httpx.Client(base_url=tiny.url, headers={"X-Shopify-Access-Token": SHOP_TOKEN})
        query = "{ products(first: 40) { nodes { id } } }"  # requests 2 + floor(2 ln 40) = 9
        first, second, third = (http.post(PATH, json={"query": query}).json() for _ in range(3))
        http.close()
    assert "errors" not in first
    assert "errors" not in second
    assert third["errors"][0]["extensions"]["code"] == "THROTTLED"
    assert third["extensions"]["cost"]["actualQueryCost"] is None
    assert third["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < 9


def test_control_api_changes_records_and_injects_faults(
    client: httpx.Client, shop: ShopifySandbox
) -> None:
    touched = client.post("/_sandbox/touch", json={"entity": "orders", "count": 2}).json()["ids"]
    assert len(touched) == 2
    assert all(
        shop.data.tables["orders"][oid]["displayFulfillmentStatus"] == "FULFILLED"
        for oid in touched
    )
    assert client.post("/_sandbox/fail", json={"status": 503, "times": 1}).status_code == 200
    assert client.post(PATH, json={"query": "{ shop { name } }"}).status_code == 503
    assert client.post(PATH, json={"query": "{ shop { name } }"}).status_code == 200
    assert client.post("/_sandbox/nope", json={}).status_code == 400
