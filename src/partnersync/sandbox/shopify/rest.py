"""The legacy REST Admin API, as the sandbox shop serves it (from Shopify's REST reference and
its "REST Admin API rate limits" and "Make paginated requests to the REST Admin API" guides,
never from our connector) — what REST clients such as dlt's ``rest_api`` source and
tap-shopify's first request speak:

* ``GET /admin/api/{version}/shop.json`` → ``{"shop": {...}}``;
* ``GET …/products.json`` and ``…/orders.json`` (``…/customers.json``, ``…/locations.json``):
  ``limit`` (default 50, at most 250, else 400), ``updated_at_min``/``updated_at_max``,
  ``created_at_min``, ``since_id``, ``ids``; orders ``status`` (``open`` by default, ``closed``,
  ``cancelled``, ``any``). Results come in id order; cursor paging by ``page_info`` in the
  ``Link`` header (``rel="next"``/``rel="previous"``); a request with ``page_info`` may carry
  only ``limit`` and ``fields`` besides (others → 400);
* ``…/products/count.json`` and ``…/orders/count.json`` → ``{"count": n}``;
* the leaky bucket: 40 requests, leaking 2 per second, per app and shop; every answer carries
  ``X-Shopify-Shop-Api-Call-Limit: used/40``; past it, 429 with ``Retry-After: 2.0``.
Records are the GraphQL records rendered in REST's shape: numeric ids, snake_case fields,
prices as strings, variants and line items inline.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson

from partnersync.sandbox.framework import LeakyBucket, Reply, json_reply
from partnersync.sandbox.shopify.data import ShopifyData, gid_number

BUCKET_SIZE = 40
LEAK_PER_SECOND = 2.0
DEFAULT_LIMIT = 50
MAX_LIMIT = 250
FILTERS = {"updated_at_min", "updated_at_max", "created_at_min", "since_id", "ids", "status"}


def _time(value: str) -> datetime:
    text = value.strip().replace("Z", "+00:00")
    if re.search(r"\d \d{2}:\d{2}$", text) and text.count(":") >= 3:
        text = f"{text[:-6]}+{text[-5:]}"  # an unencoded "+" in the query became a space
    moment = datetime.fromisoformat(text.replace(" ", "T", 1))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class RestApi:
    """REST endpoints over one shop's data (``base_url`` is called for the Link header)."""

    def __init__(self, data: ShopifyData, base_url: Callable[[], str]) -> None:
        self.data = data
        self.base_url = base_url
        self.bucket = LeakyBucket(BUCKET_SIZE, LEAK_PER_SECOND)
        self.throttled = 0
        self.version = "2026-10"

    # -- the shapes ----------------------------------------------------------------------------
    def product(self, record: dict[str, Any]) -> dict[str, Any]:
        product_id = gid_number(record["id"])
        variants = [self.data.tables["variants"][v] for v in record["_variants"]]
        return {
            "id": product_id,
            "admin_graphql_api_id": record["id"],
            "title": record["title"],
            "handle": record["handle"],
            "body_html": record.get("descriptionHtml"),
            "vendor": record.get("vendor"),
            "product_type": record.get("productType"),
            "status": str(record.get("status", "ACTIVE")).lower(),
            "tags": ", ".join(record.get("tags") or []),
            "created_at": record["createdAt"],
            "updated_at": record["updatedAt"],
            "published_at": record["createdAt"],
            "options": [
                {"name": o["name"], "values": o["values"], "position": i + 1}
                for i, o in enumerate(record.get("options") or [])
            ],
            "variants": [
                {
                    "id": gid_number(v["id"]),
                    "product_id": product_id,
                    "title": v.get("title"),
                    "sku": v.get("sku"),
                    "barcode": v.get("barcode"),
                    "price": v.get("price"),
                    "compare_at_price": v.get("compareAtPrice"),
                    "position": v.get("position"),
                    "inventory_item_id": gid_number(v["_item"]),
                    "updated_at": v.get("updatedAt"),
                }
                for v in variants
            ],
            "images": [],
        }

    def order(self, record: dict[str, Any]) -> dict[str, Any]:
        def amount(field: str) -> str:
            return str(((record.get(field) or {}).get("shopMoney") or {}).get("amount", "0.00"))

        customer = record.get("customer") or {}
        return {
            "id": gid_number(record["id"]),
            "admin_graphql_api_id": record["id"],
            "name": record.get("name"),
            "email": record.get("email"),
            "phone": record.get("phone"),
            "created_at": record["createdAt"],
            "updated_at": record["updatedAt"],
            "cancelled_at": record.get("cancelledAt"),
            "closed_at": None,
            "currency": record.get("currencyCode"),
            "total_price": amount("totalPriceSet"),
            "subtotal_price": amount("subtotalPriceSet"),
            "total_tax": amount("totalTaxSet"),
            "financial_status": str(record.get("displayFinancialStatus", "")).lower(),
            "fulfillment_status": (
                "fulfilled" if record.get("displayFulfillmentStatus") == "FULFILLED" else None
            ),
            "customer": {
                "id": gid_number(customer["id"]),
                "email": customer.get("email"),
                "first_name": customer.get("firstName"),
                "last_name": customer.get("lastName"),
            }
            if customer.get("id")
            else None,
            "line_items": [
                {
                    "id": gid_number(line["id"]),
                    "sku": line.get("sku"),
                    "title": line.get("title"),
                    "quantity": line.get("quantity"),
                    "price": line.get("_price"),
                    "variant_id": gid_number(line["_variant"]) if line.get("_variant") else None,
                }
                for line in record.get("_lineItems") or []
            ],
        }

    # -- serving ---------------------------------------------------------------------------
    def handle(self, resource: str, query: str, version: str) -> Reply:
        """One GET of ``resource`` (``shop``, ``products``, ``orders``, ``products/count`` …)
        in API ``version`` (the one ``Link`` headers point back to)."""
        self.version = version
        spent, available = self.bucket.try_spend(1)
        used = f"{round(BUCKET_SIZE - available)}/{BUCKET_SIZE}"
        if not spent:
            self.throttled += 1
            return (
                429,
                {
                    "Content-Type": "application/json",
                    "Retry-After": "2.0",
                    "X-Shopify-Shop-Api-Call-Limit": f"{BUCKET_SIZE}/{BUCKET_SIZE}",
                },
                orjson.dumps({"errors": "Exceeded 2 calls per second for api client."}),
            )
        status, headers, body = self._answer(resource, dict(parse_qsl(query)))
        return status, {**headers, "X-Shopify-Shop-Api-Call-Limit": used}, body

    def _answer(self, resource: str, params: dict[str, str]) -> Reply:
        tables = self.data.tables
        if resource == "shop":
            return json_reply(
                200,
                {
                    "shop": {
                        "id": 1,
                        "name": self.data.shop_name,
                        "myshopify_domain": "sandbox-shop.myshopify.com",
                        "currency": self.data.currency,
                        "iana_timezone": "UTC",
                    }
                },
            )
        listings: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
            "products": ("products", self.product),
            "orders": ("orders", self.order),
        }
        name, _, tail = resource.partition("/")
        if name not in listings or tail not in ("", "count"):
            return json_reply(404, {"errors": "Not Found"})
        table, shape = listings[name]
        try:
            rows = self._select(list(tables[table].values()), name, params)
        except ValueError as exc:
            return json_reply(400, {"errors": str(exc)})
        if tail == "count":
            return json_reply(200, {"count": len(rows)})
        return self._page(name, rows, shape, params)

    def _select(
        self, rows: list[dict[str, Any]], name: str, params: dict[str, str]
    ) -> list[dict[str, Any]]:
        if "page_info" in params:
            extra = set(params) - {"page_info", "limit", "fields"}
            if extra:
                raise ValueError(f"page_info cannot be combined with {sorted(extra)}")
            return rows  # the filters travel inside the cursor
        return self._filtered(rows, name, params)

    @staticmethod
    def _filtered(
        rows: list[dict[str, Any]], name: str, params: dict[str, str]
    ) -> list[dict[str, Any]]:
        chosen = rows
        if params.get("updated_at_min"):
            bound = _time(params["updated_at_min"])
            chosen = [r for r in chosen if _time(r["updatedAt"]) >= bound]
        if params.get("updated_at_max"):
            bound = _time(params["updated_at_max"])
            chosen = [r for r in chosen if _time(r["updatedAt"]) <= bound]
        if params.get("created_at_min"):
            bound = _time(params["created_at_min"])
            chosen = [r for r in chosen if _time(r["createdAt"]) >= bound]
        if params.get("since_id"):
            since = int(params["since_id"])
            chosen = [r for r in chosen if gid_number(r["id"]) > since]
        if params.get("ids"):
            wanted = {int(i) for i in params["ids"].split(",") if i.strip()}
            chosen = [r for r in chosen if gid_number(r["id"]) in wanted]
        if name == "orders":
            status = params.get("status", "open")
            if status not in ("open", "closed", "cancelled", "any"):
                raise ValueError(f"status must be open, closed, cancelled or any, not {status}")
            if status == "open":
                chosen = [r for r in chosen if not r.get("cancelledAt")]
            elif status == "cancelled":
                chosen = [r for r in chosen if r.get("cancelledAt")]
            elif status == "closed":
                chosen = []
        return chosen

    def _page(
        self,
        name: str,
        rows: list[dict[str, Any]],
        shape: Callable[[dict[str, Any]], dict[str, Any]],
        params: dict[str, str],
    ) -> Reply:
        try:
            limit = int(params.get("limit", DEFAULT_LIMIT))
        except ValueError:
            limit = -1
        if not 1 <= limit <= MAX_LIMIT:
            return json_reply(400, {"errors": {"limit": f"must be between 1 and {MAX_LIMIT}"}})
        filters = {k: v for k, v in params.items() if k in FILTERS}
        after = 0
        if "page_info" in params:
            try:
                cursor = orjson.loads(base64.urlsafe_b64decode(params["page_info"].encode()))
                filters, after = dict(cursor["filters"]), int(cursor["after"])
            except (ValueError, KeyError, TypeError):
                return json_reply(400, {"errors": {"page_info": "Invalid value."}})
            rows = self._filtered(rows, name, filters)
        ordered = sorted(rows, key=lambda r: gid_number(r["id"]))
        remaining = [r for r in ordered if gid_number(r["id"]) > after]
        page = remaining[:limit]
        headers = {"Content-Type": "application/json"}
        if len(remaining) > limit:
            token = base64.urlsafe_b64encode(
                orjson.dumps({"filters": filters, "after": gid_number(page[-1]["id"])})
            ).decode()
            query = urlencode({"limit": limit, "page_info": token})
            path = f"{self.base_url()}/admin/api/{self.version}/{name}.json"
            headers["Link"] = f'<{path}?{query}>; rel="next"'
        return 200, headers, orjson.dumps({name: [shape(r) for r in page]})
