"""The sandbox shop's search syntax, connection filters, API versions and request log, spoken to
over HTTP as any GraphQL client would (issue 7: a quoted value with a space was split into two
terms, and records updated since midnight were silently missed; `locations(query:)` and
`inventoryLevels(query:)` ignored their filters; search warnings were never returned; every API
version was served as 2026-10; the request log had no path, variables or errors)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.sandbox.shopify.data import gid_number
from partnersync.sandbox.shopify.server import search_fields, served_version
from tests.conftest import SHOP_TOKEN, make_service, new_vault


@pytest.fixture(scope="module")
def shop() -> Iterator[ShopifySandbox]:
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0, bucket_size=10_000.0) as s:
        yield s


def ask(shop: ShopifySandbox, document: str, **variables: Any) -> dict[str, Any]:
    answer = httpx.post(
        f"{shop.url}/admin/api/2026-10/graphql.json",
        json={"query": document, "variables": variables},
        headers={"X-Shopify-Access-Token": SHOP_TOKEN},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert "errors" not in body, body["errors"]
    return body


ORDER_IDS = "query($q: String) { orders(first: 250, query: $q) { nodes { id updatedAt } } }"


def order_ids(shop: ShopifySandbox, query: str) -> set[str]:
    return {node["id"] for node in ask(shop, ORDER_IDS, q=query)["data"]["orders"]["nodes"]}


def test_a_quoted_time_with_a_space_is_one_term(shop: ShopifySandbox) -> None:
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    orders = sorted(shop.data.tables["orders"])
    today = orders[:3]
    for order_id in today:
        shop.data.update(
            "orders", order_id, updated_at=(midnight + timedelta(minutes=1)).isoformat()
        )
    for order_id in orders[3:]:
        shop.data.update("orders", order_id, updated_at=(midnight - timedelta(hours=3)).isoformat())
    since = midnight.strftime("%Y-%m-%d %H:%M:%S+00:00")
    body = ask(shop, ORDER_IDS, q=f"updated_at:>='{since}'")
    assert {n["id"] for n in body["data"]["orders"]["nodes"]} == set(today)
    assert "search" not in body["extensions"]
    assert order_ids(shop, f'updated_at:>="{since}"') == set(today)


def test_connectives_modifiers_and_grouping(shop: ShopifySandbox) -> None:
    orders = sorted(shop.data.tables["orders"], key=gid_number)
    first, second, third = (gid_number(o) for o in orders[:3])
    everyone = set(orders)
    assert order_ids(shop, f"id:{first} OR id:{second}") == set(orders[:2])
    assert order_ids(shop, f"id:{first} id:{second}") == set()  # AND is implied
    assert order_ids(shop, f"-id:{first}") == everyone - {orders[0]}
    assert order_ids(shop, f"NOT id:{first}") == everyone - {orders[0]}
    assert order_ids(shop, f"(id:{first} OR id:{second} OR id:{third}) AND id:>{first}") == set(
        orders[1:3]
    )
    assert order_ids(shop, f"id:>={second} id:<={third}") == set(orders[1:3])


def test_unknown_fields_are_warned_about_and_the_rest_still_applies(shop: ShopifySandbox) -> None:
    first = sorted(shop.data.tables["orders"], key=gid_number)[0]
    body = ask(shop, ORDER_IDS, q=f"colour:green id:{gid_number(first)}")
    assert [n["id"] for n in body["data"]["orders"]["nodes"]] == [first]
    (search,) = body["extensions"]["search"]
    assert search["path"] == ["orders"]
    assert search["query"] == f"colour:green id:{gid_number(first)}"
    assert search["warnings"] == [
        {"field": "colour", "message": "Invalid search field for this query."}
    ]
    assert "cost" in body["extensions"]


def test_the_filters_a_connection_documents_are_read_from_the_schema() -> None:
    assert {"name", "active", "location_id", "created_at"} <= search_fields(
        "QueryRoot", "locations"
    )
    assert {"inventory_item_id", "updated_at", "id"} <= search_fields(
        "InventoryItem", "inventoryLevels"
    )
    assert "updated_at" in search_fields("QueryRoot", "inventoryItems")


def test_locations_and_inventory_levels_honour_their_filters(shop: ShopifySandbox) -> None:
    locations = shop.data.tables["locations"]
    outlet = next(lid for lid, loc in locations.items() if loc["name"] == "Outlet")
    body = ask(
        shop,
        'query { locations(first: 50, query: "name:Outlet") { nodes { id name } } }',
    )
    assert [n["id"] for n in body["data"]["locations"]["nodes"]] == [outlet]

    item_id, item = next(
        (i, it) for i, it in shop.data.tables["inventory_items"].items() if len(it["_levels"]) > 1
    )
    chosen = item["_levels"][0]
    levels_of_item = """query($id: ID!, $q: String) { node(id: $id) { ... on InventoryItem {
        inventoryLevels(first: 50, query: $q) { nodes { id } } } } }"""
    body = ask(shop, levels_of_item, id=item_id, q=f"id:{gid_number(chosen)}")
    assert [n["id"] for n in body["data"]["node"]["inventoryLevels"]["nodes"]] == [chosen]
    # location_id is not a filter inventoryLevels documents: warned about, not applied.
    body = ask(shop, levels_of_item, id=item_id, q="location_id:1")
    assert len(body["data"]["node"]["inventoryLevels"]["nodes"]) == len(item["_levels"])
    (search,) = body["extensions"]["search"]
    assert search["path"] == ["node", "inventoryLevels"]
    assert search["warnings"][0]["field"] == "location_id"


def test_an_interface_selection_costs_its_dearest_fragment(shop: ShopifySandbox) -> None:
    product = next(iter(shop.data.tables["products"]))
    cheap = ask(shop, "query($id: ID!) { node(id: $id) { id } }", id=product)
    both = ask(
        shop,
        """query($id: ID!) { node(id: $id) {
            ... on Product { variants(first: 50) { nodes { id } } }
            ... on Order { lineItems(first: 10) { nodes { id } } } } }""",
        id=product,
    )
    product_only = ask(
        shop,
        """query($id: ID!) { node(id: $id) {
            ... on Product { variants(first: 50) { nodes { id } } } } }""",
        id=product,
    )
    assert cheap["extensions"]["cost"]["requestedQueryCost"] == 1
    requested = both["extensions"]["cost"]["requestedQueryCost"]
    assert requested == product_only["extensions"]["cost"]["requestedQueryCost"] > 1


def test_api_versions_are_served_as_shopify_serves_them() -> None:
    today = date(2026, 11, 22)
    assert served_version("2026-10", today) == "2026-10"
    assert served_version("2026-01", today) == "2026-01"  # supported for twelve months
    assert served_version("2025-10", today) == "2026-01"  # retired: falls forward
    assert served_version("2025-07", today) == "2026-01"
    assert served_version("2027-01", today) == "2027-01"  # the release candidate
    assert served_version("unstable", today) == "unstable"
    assert served_version("2027-04", today) is None  # not released
    assert served_version("2026-05", today) is None  # not a quarter


def test_every_answer_names_its_version_and_request_and_the_log_says_what_happened(
    shop: ShopifySandbox,
) -> None:
    shop.log.clear()
    old = httpx.post(
        f"{shop.url}/admin/api/2024-01/graphql.json",
        json={"query": "query Shop { shop { name } }"},
        headers={"X-Shopify-Access-Token": SHOP_TOKEN},
    )
    assert old.status_code == 200
    assert old.headers["X-Shopify-API-Version"] == served_version("2024-01", date.today())
    assert old.headers["X-Request-Id"]
    future = httpx.post(
        f"{shop.url}/admin/api/2031-01/graphql.json",
        json={"query": "{ shop { name } }"},
        headers={"X-Shopify-Access-Token": SHOP_TOKEN},
    )
    assert future.status_code == 404
    broken = ask_raw(shop, "query Broken { shop { noSuchField } }")
    assert broken["errors"]
    asked = ask(shop, ORDER_IDS, q="id:1")
    assert "orders" in asked["data"]

    first, third, fourth = shop.log.entries  # the 404 never reached the API
    assert first["path"] == "/admin/api/2024-01/graphql.json"
    assert first["request_id"] == old.headers["X-Request-Id"]
    assert first["version"] == old.headers["X-Shopify-API-Version"]
    assert first["op"] == "Shop"
    assert first["requested"] >= 1
    assert "actual" in first
    assert "noSuchField" in third["errors"][0]
    assert fourth["variables"] == {"q": "id:1"}
    assert fourth["status"] == 200


def ask_raw(shop: ShopifySandbox, document: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{shop.url}/admin/api/2026-10/graphql.json",
        json={"query": document},
        headers={"X-Shopify-Access-Token": SHOP_TOKEN},
    )
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.anyio
async def test_the_connector_says_when_shopify_answers_another_version(
    shop: ShopifySandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = make_service(tmp_path / "project", new_vault())
    service.add_account(
        name="old",
        platform="shopify",
        base_url=shop.url,
        secrets={"access_token": SHOP_TOKEN},
        api_version="2024-01",
        allow_loopback=True,
    )
    with caplog.at_level(logging.WARNING, logger="partnersync.shopify"):
        await service.test_account("old")
    warned = [r.getMessage() for r in caplog.records if "answered with" in r.getMessage()]
    assert len(warned) == 1
    assert "2024-01" in warned[0]
    service.close()
