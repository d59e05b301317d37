"""A loopback Shopify GraphQL Admin API, executing against Shopify's real 2026-10 schema.

Documents are parsed and validated with graphql-core against the introspection result Shopify
ships (so a query that would fail on Shopify fails here), then executed with resolvers for the
subset partnersync uses: ``shop``, ``products``, ``orders``, ``inventoryItems``, ``locations``,
``node`` and their nested connections. Anything outside that subset resolves to ``null`` or an
error, as an unknown field would on a shop with no such data.

Shopify behaviour it follows (``../shared/platforms/shopify.md``): ``X-Shopify-Access-Token``
(401 otherwise), ``first``/``last`` ≤ 250, opaque cursors with ``pageInfo``, the search syntax
for ``updated_at``/``created_at``/``id``/``sku``, ``sortKey: UPDATED_AT``, the requested-cost
calculation with its 1,000-point single-query maximum (``MAX_COST_EXCEEDED``), a leaky bucket
reported in ``extensions.cost`` and ``THROTTLED`` (HTTP 200 by default, 429 with a knob) when the
bucket cannot hold a query's requested cost; the unused part of the requested cost is refunded.

Speed: each distinct document is validated once, and a rendered page is cached per
(document, variables, data version), so repeated identical requests cost one dict lookup.
"""

from __future__ import annotations

import base64
import bisect
import gzip
import json
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import date
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    ExecutionResult,
    FieldNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    build_client_schema,
    execute_sync,
    parse,
    validate,
)

from partnersync.sandbox.framework import DROP, Reply, Sandbox, json_reply
from partnersync.sandbox.shopify.bulk import BulkOperations
from partnersync.sandbox.shopify.cost import (
    MAX_QUERY_POINTS,
    CostRules,
    parsed,
    requested_points,
    scaled,
)
from partnersync.sandbox.shopify.data import ShopifyData, gid_number
from partnersync.sandbox.shopify.fastexec import Unsupported, execute_query
from partnersync.sandbox.shopify.fill import fill_missing, filling_resolver
from partnersync.sandbox.shopify.mutations import ShopifyMutations, fulfillment_orders
from partnersync.sandbox.shopify.oauth import ShopifyOAuthServer
from partnersync.sandbox.shopify.rest import RestApi
from partnersync.sandbox.shopify.search import build_filter
from partnersync.sandbox.shopify.webhooks import shop_sender

API_VERSION = "2026-10"
SCHEMA_FILE = "admin_2026-10.json.gz"
MAX_PAGE = 250
INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


def served_version(requested: str, today: date) -> str | None:
    """The API version Shopify answers a request for ``requested`` with on ``today`` (its
    versioning page): a stable version released in the last 12 months, the release candidate
    (the quarter after the newest stable one) or ``unstable`` as asked; an older version falls
    forward to the oldest supported one; a version not released yet, or not a quarter's, is
    not found (None). The sandbox has one schema (2026-10) for every version it serves."""
    if requested == "unstable":
        return requested
    year, month = (int(part) for part in requested.split("-"))
    if month not in (1, 4, 7, 10):
        return None
    quarters = [(y, m) for y in range(today.year - 2, today.year + 2) for m in (1, 4, 7, 10)]
    released = [(y, m) for y, m in quarters if date(y, m, 1) <= today]
    supported = [(y, m) for y, m in released if date(y + 1, m, 1) > today]
    newest = released[-1]
    candidate = quarters[quarters.index(newest) + 1]
    if (year, month) == candidate or (year, month) in supported:
        return requested
    if (year, month) < supported[0]:
        return f"{supported[0][0]}-{supported[0][1]:02d}"
    return None


IN_BULK: ContextVar[bool] = ContextVar("in_bulk", default=False)
"""True while a bulk operation's query runs (connections then return every node)."""


class BulkSlice:
    """The root records one part of a bulk operation's query covers (``start``..``stop`` of the
    root connection's order); ``used`` says a root connection honoured it."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop, self.used = start, stop, False


BULK_SLICE: ContextVar[BulkSlice | None] = ContextVar("bulk_slice", default=None)

SERVED_VERSION: ContextVar[str] = ContextVar("served_version", default=API_VERSION)
"""The API version the request being answered is served with."""

_REST_PATH = re.compile(
    r"^/admin/api/(?P<version>[0-9]{4}-[0-9]{2}|unstable)/(?P<resource>[a-z_]+(/count)?)\.json$"
)
_PATH = re.compile(r"^/admin/api/(?P<version>[0-9]{4}-[0-9]{2}|unstable)/graphql\.json$")


_SCHEMA_LOCK = threading.Lock()


def load_schema() -> GraphQLSchema:
    """Shopify's Admin GraphQL schema 2026-10 (introspection shipped in @shopify/dev-mcp, ISC),
    built once per process (the first requests, arriving together, wait for the one build
    rather than each spending a second of CPU on their own)."""
    with _SCHEMA_LOCK:
        return _build_schema()


@lru_cache(maxsize=1)
def _build_schema() -> GraphQLSchema:
    source = resources.files(__package__).joinpath(SCHEMA_FILE)
    with source.open("rb") as handle, gzip.open(handle) as unpacked:
        data = json.load(unpacked)["data"]
    schema = build_client_schema(data)
    # graphql-core's strict schema check rejects a few deprecations Shopify ships; documents
    # are still validated in full.
    schema._validation_errors = []
    return schema


@lru_cache(maxsize=64)
def search_fields(type_name: str, field_name: str) -> frozenset[str]:
    """The search fields ``type_name.field_name(query:)`` documents, read from the table in
    the argument's description in Shopify's schema (``| name | type | …``)."""
    owner = load_schema().get_type(type_name)
    field = getattr(owner, "fields", {}).get(field_name)
    argument = field.args.get("query") if field is not None else None
    names = set()
    for line in ((argument.description if argument else None) or "").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        header = len(cells) > 1 and cells[1] in ("type", "----")
        if line.startswith("|") and cells[0] and not header:
            names.add(cells[0])
    return frozenset(names)


SEARCH_KEYS = {
    "active": "isActive",
    "location_id": "_location",
    "inventory_item_id": "_item",
    "product_type": "productType",
}
"""Search fields whose record key is not the field's camelCase name."""


def _path(info: Any) -> list[str]:
    """The response path of the field being resolved (list indexes left out)."""
    return [str(part) for part in info.path.as_list() if isinstance(part, str)]


def _record_key(field: str) -> str:
    head, *rest = field.split("_")
    return SEARCH_KEYS.get(field, head + "".join(part.title() for part in rest))


@lru_cache(maxsize=512)
def validate_document(document: str) -> tuple[DocumentNode | None, tuple[str, ...]]:
    """Parse and validate once per distinct document; returns (ast, error messages)."""
    try:
        ast = parsed(document)
    except GraphQLError as exc:
        return None, (exc.message,)
    errors = validate(load_schema(), ast)
    return ast, tuple(error.message for error in errors)


def _encode_cursor(key: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode()


def _decode_cursor(cursor: str) -> Any:
    try:
        return tuple(orjson.loads(base64.urlsafe_b64decode(cursor.encode())))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor!r}") from exc


def _id_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (gid_number(record["id"]),)


def _updated_key(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["updatedAt"], gid_number(record["id"]))


Order = tuple[list[dict[str, Any]], list[tuple[Any, ...]]]
"""Records in a connection's order, and each one's sort key."""


def ordering(
    items: list[dict[str, Any]], key: Callable[[dict[str, Any]], tuple[Any, ...]], reverse: bool
) -> Order:
    """``items`` sorted by ``key`` (descending with ``reverse``), with their keys."""
    ordered = sorted(items, key=key, reverse=reverse)
    return ordered, [key(item) for item in ordered]


def connection(
    items: list[dict[str, Any]],
    args: dict[str, Any],
    view: Callable[[dict[str, Any]], dict[str, Any]],
    key: Callable[[dict[str, Any]], tuple[Any, ...]] = _id_key,
    order: Order | None = None,
) -> dict[str, Any]:
    """A Relay connection over ``items`` with keyset cursors, as Shopify pages (all of them in
    one go inside a bulk operation, which has no page sizes). ``order``: ``items`` already in
    order with their keys (see :func:`ordering`)."""
    first, last = args.get("first"), args.get("last")
    if IN_BULK.get():
        first, last = len(items), None
    if first is None and last is None:
        raise GraphQLError("you must provide one of first or last")
    size = first if first is not None else last
    if size is None or size < 0 or (size > MAX_PAGE and not IN_BULK.get()):
        raise GraphQLError(f"The page size must be between 0 and {MAX_PAGE}")
    reverse = bool(args.get("reverse"))
    if order is None:
        order = ordering(items, key, reverse)
    ordered, keys = order
    start = 0
    if args.get("after"):
        after = _decode_cursor(args["after"])
        if reverse:
            start = next((i for i, k in enumerate(keys) if k < after), len(keys))
        else:
            start = bisect.bisect_right(keys, after)
    page = ordered[start : start + size]
    nodes = [view(item) for item in page]

    def cursor(item: dict[str, Any]) -> Callable[..., str]:
        # Encoded when selected (a callable field value is resolved with the field's info).
        return lambda info, **args: _encode_cursor(key(item))

    return {
        "nodes": nodes,
        "edges": [
            {"node": node, "cursor": cursor(item)} for node, item in zip(nodes, page, strict=True)
        ],
        "pageInfo": {
            "hasNextPage": start + size < len(ordered),
            "hasPreviousPage": start > 0,
            "startCursor": cursor(page[0]) if page else None,
            "endCursor": cursor(page[-1]) if page else None,
        },
    }


def _public(record: dict[str, Any], typename: str) -> dict[str, Any]:
    view = {k: v for k, v in record.items() if not k.startswith("_")}
    view["__typename"] = typename
    return view


class _Resolvers:
    """Turns stored records into resolvable views for one request."""

    def __init__(
        self,
        data: ShopifyData,
        warnings: list[dict[str, Any]],
        mutations: ShopifyMutations,
        bulk: BulkOperations | None = None,
        orders: OrderedDict[tuple[Any, ...], tuple[Order, list[dict[str, Any]]]] | None = None,
    ) -> None:
        self.bulk = bulk
        self.orders = orders
        """Root connections' filtered, sorted records by (field, path, search, sort, data
        version), kept by the sandbox across requests: paging a 20,000-record shop sorted all of
        it again for every page of 250."""
        self.data = data
        self.tables = data.tables
        self.warnings = warnings
        self.mutations = mutations
        mutations.view_product = lambda record: self.product(record)

    def _filtered(
        self,
        records: list[dict[str, Any]],
        query: str | None,
        owner: str,
        field: str,
        path: list[str],
    ) -> list[dict[str, Any]]:
        """``records`` matching the search ``query`` of ``owner.field`` (its documented search
        fields); ignored terms become search warnings for ``path``."""
        supported = search_fields(owner, field)
        keys = {name: _record_key(name) for name in supported}
        matches, warnings = build_filter(query, set(supported), gid_number, keys)
        if warnings:
            self.warnings.append({"path": path, "query": query, "warnings": warnings})
        return [record for record in records if matches(record)]

    @staticmethod
    def _sort_key(args: dict[str, Any]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
        return _updated_key if args.get("sortKey") == "UPDATED_AT" else _id_key

    # -- views ---------------------------------------------------------------------------
    def variant(self, record: dict[str, Any]) -> dict[str, Any]:
        view = _public(record, "ProductVariant")
        view["inventoryItem"] = lambda info, **a: self.inventory_item(
            self.tables["inventory_items"][record["_item"]]
        )
        view["product"] = lambda info, **a: self.product(
            self.tables["products"][record["_product"]]
        )
        return view

    def product(self, record: dict[str, Any]) -> dict[str, Any]:
        view = _public(record, "Product")
        view["options"] = lambda info, **a: record["options"][: a.get("first") or None]
        view["variants"] = lambda info, **a: connection(
            [self.tables["variants"][v] for v in record["_variants"]],
            a,
            self.variant,
            key=lambda r: (r["position"], gid_number(r["id"])),
        )
        return view

    def location(self, record: dict[str, Any]) -> dict[str, Any]:
        view = _public(record, "Location")
        view["inventoryLevels"] = lambda info, **a: connection(
            self._filtered(
                [
                    level
                    for level in self.tables["inventory_levels"].values()
                    if level["_location"] == record["id"]
                ],
                a.get("query"),
                "Location",
                "inventoryLevels",
                _path(info),
            ),
            a,
            self.level,
        )
        return view

    def level(self, record: dict[str, Any]) -> dict[str, Any]:
        view = _public(record, "InventoryLevel")
        quantities = record["quantities"]
        view["quantities"] = lambda info, names: [
            {"id": f"{record['id']}&name={n}", "name": n, "quantity": quantities.get(n, 0)}
            for n in names
        ]
        view["location"] = lambda info, **a: self.location(
            self.tables["locations"][record["_location"]]
        )
        view["item"] = lambda info, **a: self.inventory_item(
            self.tables["inventory_items"][record["_item"]]
        )
        return view

    def inventory_item(self, record: dict[str, Any]) -> dict[str, Any]:
        view = _public(record, "InventoryItem")
        view["variant"] = lambda info, **a: next(
            (
                self.variant(variant)
                for variant in self.tables["variants"].values()
                if variant["_item"] == record["id"]
            ),
            None,
        )
        view["inventoryLevels"] = lambda info, **a: connection(
            self._filtered(
                [self.tables["inventory_levels"][lv] for lv in record["_levels"]],
                a.get("query"),
                "InventoryItem",
                "inventoryLevels",
                _path(info),
            ),
            a,
            self.level,
        )
        return view

    def line_item(self, record: dict[str, Any]) -> dict[str, Any]:
        view = _public(record, "LineItem")
        view["variant"] = (
            {"__typename": "ProductVariant", "id": record["_variant"]}
            if record.get("_variant")
            else None
        )
        view["originalUnitPriceSet"] = {
            "shopMoney": {"amount": record["_price"], "currencyCode": self.data.currency}
        }
        return view

    def fulfillment_order(self, record: dict[str, Any]) -> dict[str, Any]:
        view = _public(record, "FulfillmentOrder")
        view["lineItems"] = lambda info, **a: connection(
            record["_lines"],
            a,
            lambda line: {
                **_public(line, "FulfillmentOrderLineItem"),
                "lineItem": {"__typename": "LineItem", "id": line["_line"]},
            },
            key=lambda r: (gid_number(r["id"]),),
        )
        return view

    def order(self, record: dict[str, Any]) -> dict[str, Any]:
        view = _public(record, "Order")
        view["fulfillmentOrders"] = lambda info, **a: connection(
            fulfillment_orders(record), a, self.fulfillment_order
        )
        view["lineItems"] = lambda info, **a: connection(
            record["_lineItems"], a, self.line_item, key=lambda r: (gid_number(r["id"]),)
        )
        view["fulfillments"] = lambda info, **a: record["fulfillments"][: a.get("first") or None]
        return view

    # -- root fields ---------------------------------------------------------------------
    def root(self) -> dict[str, Any]:
        return {
            "shop": {"name": self.data.shop_name, "currencyCode": self.data.currency},
            "products": lambda info, **a: self._root_connection(
                "products", info, a, self.product, self._sort_key(a)
            ),
            "orders": lambda info, **a: self._root_connection(
                "orders", info, a, self.order, self._sort_key(a)
            ),
            "inventoryItems": lambda info, **a: self._root_connection(
                "inventory_items", info, a, self.inventory_item, _id_key
            ),
            "locations": lambda info, **a: self._root_connection(
                "locations", info, a, self.location, _id_key
            ),
            "customers": lambda info, **a: connection(
                self._filtered(
                    self.customers(), a.get("query"), "QueryRoot", "customers", _path(info)
                ),
                a,
                lambda record: _public(record, "Customer"),
                self._sort_key(a),
            ),
            "productVariants": lambda info, **a: self._root_connection(
                "variants", info, a, self.variant, _id_key
            ),
            "node": lambda info, id: self.node(id),
            "currentAppInstallation": {
                "__typename": "AppInstallation",
                "id": "gid://shopify/AppInstallation/1",
                "accessScopes": [
                    {"handle": scope, "description": scope} for scope in self.data_scopes()
                ],
            },
            "productsCount": lambda info, **a: self._count("products", info, a),
            "ordersCount": lambda info, **a: self._count("orders", info, a),
            "productVariantsCount": lambda info, **a: self._count("variants", info, a),
            "bulkOperation": lambda info, id: self.bulk.find(id) if self.bulk else None,
            "currentBulkOperation": lambda info, **a: self.bulk.current() if self.bulk else None,
            "bulkOperationRunQuery": lambda info, query, groupObjects=False: (
                self.bulk.run_query(query, groupObjects, SERVED_VERSION.get())
                if self.bulk
                else None
            ),
            "order": lambda info, id: self.node(id),
            "productByIdentifier": lambda info, identifier: self.product_by_identifier(identifier),
            **self.mutations.root(),
        }

    def data_scopes(self) -> list[str]:
        """The access scopes the sandbox grants an app (every read and write it serves)."""
        return [
            "read_products",
            "write_products",
            "read_inventory",
            "write_inventory",
            "read_orders",
            "write_orders",
            "read_customers",
            "read_locations",
            "read_fulfillments",
            "write_fulfillments",
        ]

    def customers(self) -> list[dict[str, Any]]:
        """The shop's customers: each order's buyer, with the times of their first and latest
        order as created and updated."""
        found: dict[str, dict[str, Any]] = {}
        for order in sorted(self.tables["orders"].values(), key=lambda o: o["createdAt"]):
            buyer = order.get("customer")
            if not isinstance(buyer, dict) or not buyer.get("id"):
                continue
            known = found.setdefault(
                buyer["id"], {**buyer, "createdAt": order["createdAt"], "numberOfOrders": "0"}
            )
            known["updatedAt"] = max(known.get("updatedAt") or "", order["updatedAt"])
            known["numberOfOrders"] = str(int(known["numberOfOrders"]) + 1)
        return list(found.values())

    def _count(self, table: str, info: Any, args: dict[str, Any]) -> dict[str, Any]:
        """``productsCount`` and friends: exact up to ``limit`` (10,000 by default)."""
        found = len(self._root_filtered(table, info, args))
        limit = args.get("limit", 10_000)
        if limit is not None and found > limit:
            return {"count": limit, "precision": "AT_LEAST"}
        return {"count": found, "precision": "EXACT"}

    def _root_connection(
        self,
        table: str,
        info: Any,
        args: dict[str, Any],
        view: Callable[[dict[str, Any]], dict[str, Any]],
        key: Callable[[dict[str, Any]], tuple[Any, ...]],
    ) -> dict[str, Any]:
        """A root connection over ``table``, its filtered order computed once per data version
        (its search warnings given again with it)."""
        reverse = bool(args.get("reverse"))
        cache_key = (
            table,
            tuple(_path(info)),
            args.get("query"),
            key,
            reverse,
            self.data.version,
        )
        cached = self.orders.get(cache_key) if self.orders is not None else None
        if cached is None:
            before = len(self.warnings)
            items = self._root_filtered(table, info, args)
            cached = (ordering(items, key, reverse), self.warnings[before:])
            if self.orders is not None:
                self.orders[cache_key] = cached
                if len(self.orders) > 16:
                    self.orders.popitem(last=False)
        else:
            self.warnings.extend(cached[1])
        order, _ = cached
        part = BULK_SLICE.get()
        if part is not None and IN_BULK.get():
            part.used = True
            order = (order[0][part.start : part.stop], order[1][part.start : part.stop])
        return connection(order[0], args, view, key, order=order)

    def _root_filtered(self, table: str, info: Any, args: dict[str, Any]) -> list[dict[str, Any]]:
        return self._filtered(
            list(self.tables[table].values()),
            args.get("query"),
            "QueryRoot",
            info.field_name,
            _path(info),
        )

    def product_by_identifier(self, identifier: dict[str, Any]) -> dict[str, Any] | None:
        products = self.tables["products"]
        if identifier.get("id"):
            record = products.get(identifier["id"])
        else:
            record = next(
                (p for p in products.values() if p["handle"] == identifier.get("handle")), None
            )
        return None if record is None else self.product(record)

    def node(self, node_id: str) -> dict[str, Any] | None:
        kind = node_id.split("/")[3] if node_id.count("/") >= 4 else ""
        if kind == "BulkOperation":
            return self.bulk.find(node_id) if self.bulk else None
        table = {
            "Product": ("products", self.product),
            "ProductVariant": ("variants", self.variant),
            "InventoryItem": ("inventory_items", self.inventory_item),
            "InventoryLevel": ("inventory_levels", self.level),
            "Order": ("orders", self.order),
            "Location": ("locations", self.location),
        }.get(kind)
        if table is None:
            return None
        record = self.tables[table[0]].get(node_id)
        return None if record is None else table[1](record)


def actual_cost(selection_set: SelectionSetNode | None, data: Any, coster: CostRules) -> int:
    """Cost of what was actually returned: a connection is scaled by the nodes it delivered
    (the dearest node standing for each), so the actual cost never exceeds the requested."""
    if selection_set is None or not isinstance(data, dict):
        return 0
    total = 0
    for item in selection_set.selections:
        if isinstance(item, InlineFragmentNode):
            total += actual_cost(item.selection_set, data, coster)
            continue
        if not isinstance(item, FieldNode) or item.selection_set is None:
            continue
        name = item.name.value
        key = item.alias.value if item.alias else name
        if name == "pageInfo" or key not in data:
            continue  # a field of another type's fragment is not in this node's data
        value = data[key]
        size = coster.page_size(item)
        if isinstance(value, dict) and size is not None and ("nodes" in value or "edges" in value):
            nodes = value.get("nodes") or [e.get("node") for e in value.get("edges") or []]
            node_selection = _node_selection(item.selection_set)
            each = max((actual_cost(node_selection, node, coster) for node in nodes), default=0)
            total += 2 + scaled(len(nodes)) * (1 + each)
        elif isinstance(value, list) and size is not None:
            each = max((actual_cost(item.selection_set, v, coster) for v in value), default=0)
            total += scaled(len(value)) * (1 + each) or 1
        elif isinstance(value, list):
            # A list without a page size is charged as one object when requested, so it is
            # when delivered: the actual cost never exceeds the requested one.
            total += 1 + max((actual_cost(item.selection_set, v, coster) for v in value), default=0)
        else:
            total += 1 + actual_cost(item.selection_set, value, coster)
    return total


def _node_selection(selection_set: SelectionSetNode) -> SelectionSetNode | None:
    for item in selection_set.selections:
        if isinstance(item, FieldNode) and item.name.value == "nodes":
            return item.selection_set
        if isinstance(item, FieldNode) and item.name.value == "edges" and item.selection_set:
            for inner in item.selection_set.selections:
                if isinstance(inner, FieldNode) and inner.name.value == "node":
                    return inner.selection_set
    return None


class ShopifySandbox(Sandbox):
    """A fake shop on 127.0.0.1 speaking the GraphQL Admin API 2026-10.

    Knobs: ``token`` (the only access token accepted), ``bucket_size`` and ``restore_rate``
    (points; Shopify's Standard plan is 1,000 / 100 per second by default here),
    ``throttle_status`` (200 or 429 for THROTTLED answers), and the data size.
    """

    platform = "shopify"

    def __init__(
        self,
        *,
        token: str = "sandbox-token",
        bucket_size: float = 1000.0,
        restore_rate: float = 100.0,
        throttle_status: int = 200,
        port: int = 0,
        log_path: Path | None = None,
        data: ShopifyData | None = None,
        **data_options: Any,
    ) -> None:
        super().__init__(port=port, log_path=log_path)
        from partnersync.sandbox.framework import LeakyBucket

        self.token = token
        self.bucket = LeakyBucket(bucket_size, restore_rate)
        self.throttle_status = throttle_status
        self.data = data or ShopifyData(**data_options)
        self.mutations = ShopifyMutations(self.data)
        self.oauth = ShopifyOAuthServer(shop_domain="sandbox-shop.myshopify.com")
        self.webhooks = shop_sender("sandbox-shop.myshopify.com")
        self.bulk = BulkOperations(self._run_bulk_query, lambda: self.url)
        self.bulk_part = 1000
        """Root records a bulk operation's query answers at a time (``_run_bulk_query``)."""
        self.rest = RestApi(self.data, lambda: self.url)
        self.data.observers.append(self.webhooks.changed)
        load_schema()  # a shop is up before its first request (as Shopify's is)
        self._orders: OrderedDict[tuple[Any, ...], tuple[Order, list[dict[str, Any]]]] = (
            OrderedDict()
        )
        self._rendered: OrderedDict[
            tuple[str, bytes, int, int], tuple[bytes, int, int, list[str]]
        ] = OrderedDict()

    def credentials(self) -> dict[str, str]:
        """The access token this sandbox accepts."""
        return {"access_token": self.token}

    def stop(self) -> None:
        """Stop serving and sending webhooks."""
        self.webhooks.close()
        super().stop()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Serve ``POST /admin/api/{version}/graphql.json`` and the OAuth endpoints; every
        answer carries an ``X-Request-Id``, every API answer the version that served it."""
        request_id = str(uuid.uuid4())
        self.log.annotate(path=path.split("?")[0], request_id=request_id)
        try:
            reply = self._handle(method, path, headers, body)
        finally:
            self.log.clear_context()
        if reply is DROP:
            return reply
        return reply[0], {**reply[1], "X-Request-Id": request_id}, reply[2]

    def run_document(
        self, ast: DocumentNode, variables: dict[str, Any], warnings: list[dict[str, Any]]
    ) -> ExecutionResult:
        """Run a validated document over the shop: a read through the fast executor when it
        can answer (see ``fastexec``), else — a write, or an answer with errors — through
        graphql-core. Search warnings are appended to ``warnings``."""
        schema = load_schema()
        operations = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
        with self.data.lock:
            if len(operations) == 1:
                found: list[dict[str, Any]] = []
                try:
                    data = execute_query(
                        schema,
                        ast,
                        operations[0],
                        _Resolvers(
                            self.data, found, self.mutations, self.bulk, self._orders
                        ).root(),
                        variables,
                        fill_missing,
                    )
                except Unsupported:
                    pass
                else:
                    warnings.extend(found)
                    return ExecutionResult(data, None)
            return execute_sync(
                schema,
                ast,
                root_value=_Resolvers(
                    self.data, warnings, self.mutations, self.bulk, self._orders
                ).root(),
                variable_values=variables,
                field_resolver=filling_resolver,
            )

    def _run_bulk_query(self, query: str) -> Iterator[dict[str, Any]]:
        """A bulk operation's query over the whole shop (no page sizes), in parts of
        ``bulk_part`` root records: each part's answer becomes file lines and is let go before
        the next is made (a 100,000-product answer held whole took 2.8 GB and most of its time
        in allocation and garbage collection). A query whose root is not sliced runs whole."""
        document = parse(query)
        start = 0
        while True:
            part = BulkSlice(start, start + self.bulk_part)
            tokens = IN_BULK.set(True), BULK_SLICE.set(part)
            try:
                result = self.run_document(document, {}, [])
            finally:
                BULK_SLICE.reset(tokens[1])
                IN_BULK.reset(tokens[0])
            data = dict(result.data or {})
            yield data
            roots = next(iter(data.values()), None) if len(data) == 1 else None
            found = len((roots or {}).get("edges") or (roots or {}).get("nodes") or [])
            if not part.used or found < self.bulk_part:
                return
            start += self.bulk_part

    def _handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        if path.startswith("/admin/oauth/"):
            return self.oauth.handle(method, path, headers, body)
        if path.startswith("/bulk-results/") and method == "GET":
            return self.bulk.serve_file(path.split("?")[0])
        route, _, query = path.partition("?")
        rest = _REST_PATH.match(route) if method == "GET" else None
        if rest is not None and rest["resource"] != "graphql":
            return self._rest(rest["version"], rest["resource"], query, headers)
        match = _PATH.match(route)
        version = served_version(match["version"], self.data.now().date()) if match else None
        if match is None or method != "POST" or version is None:
            return json_reply(404, {"errors": "Not Found"})
        presented = headers.get("x-shopify-access-token")
        if presented != self.token and not self.oauth.accepts(presented):
            self.log.append({"t": time.monotonic(), "status": 401, "op": None})
            return json_reply(
                401,
                {"errors": INVALID_TOKEN},
            )
        try:
            payload = orjson.loads(body)
            document = payload["query"]
            variables = payload.get("variables") or {}
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return json_reply(400, {"errors": {"query": "Required parameter missing or invalid"}})
        self.log.annotate(version=version, variables=variables)
        served = SERVED_VERSION.set(version)
        try:
            status, reply_headers, answer = self._graphql(
                document, variables, payload.get("operationName")
            )
        finally:
            SERVED_VERSION.reset(served)
        if status:
            reply_headers = {**reply_headers, "X-Shopify-API-Version": version}
        return status, reply_headers, answer

    def _rest(self, requested: str, resource: str, query: str, headers: dict[str, str]) -> Reply:
        """The legacy REST endpoints (:mod:`partnersync.sandbox.shopify.rest`)."""
        version = served_version(requested, self.data.now().date())
        if version is None:
            return json_reply(404, {"errors": "Not Found"})
        presented = headers.get("x-shopify-access-token")
        if presented != self.token and not self.oauth.accepts(presented):
            self.log.append({"t": time.monotonic(), "status": 401, "op": f"REST {resource}"})
            return json_reply(401, {"errors": INVALID_TOKEN})
        status, reply_headers, body = self.rest.handle(resource, query, version)
        self.log.append(
            {"t": time.monotonic(), "op": f"REST {resource}", "status": status, "rest": True}
        )
        return status, {**reply_headers, "X-Shopify-API-Version": version}, body

    def _graphql(self, document: str, variables: dict[str, Any], operation: str | None) -> Reply:
        ast, errors = validate_document(document)
        if ast is None or errors:
            self.log.append(
                {"t": time.monotonic(), "op": operation, "status": 200, "errors": list(errors)}
            )
            return json_reply(200, {"errors": [{"message": m} for m in errors]})
        op_node = next(d for d in ast.definitions if isinstance(d, OperationDefinitionNode))
        op_name = operation or (op_node.name.value if op_node.name else None)
        requested = requested_points(document, variables)
        entry: dict[str, Any] = {"t": time.monotonic(), "op": op_name, "requested": requested}
        if requested > MAX_QUERY_POINTS:
            entry.update(status=200, error="MAX_COST_EXCEEDED", actual=0)
            self.log.append(entry)
            return json_reply(
                200,
                {
                    "errors": [
                        {
                            "message": f"Query cost is {requested}, which exceeds the single "
                            f"query max cost limit ({MAX_QUERY_POINTS}).",
                            "extensions": {
                                "code": "MAX_COST_EXCEEDED",
                                "cost": requested,
                                "maxCost": MAX_QUERY_POINTS,
                            },
                        }
                    ]
                },
            )
        spent, available = self.bucket.try_spend(requested)
        if not spent:
            entry.update(status=self.throttle_status, throttled=True, actual=0, available=available)
            self.log.append(entry)
            return json_reply(
                self.throttle_status,
                {
                    "errors": [
                        {
                            "message": "Throttled",
                            "extensions": {
                                "code": "THROTTLED",
                                "documentation": "https://shopify.dev/api/usage/rate-limits",
                            },
                        }
                    ],
                    "extensions": {"cost": self._cost(requested, None, available)},
                },
            )
        body, actual, records, execution_errors = self._execute(document, ast, variables, op_node)
        if execution_errors:
            entry["errors"] = execution_errors
        available = self.bucket.refund(requested - actual)
        entry.update(status=200, actual=actual, available=available, records=records)
        is_write = op_node.operation is OperationType.MUTATION
        if is_write:
            entry["write"] = True
        if is_write and op_name and self.faults.take_drop(op_name):
            entry["dropped"] = True
            self.log.append(entry)
            return DROP
        self.log.append(entry)
        cost = orjson.dumps(self._cost(requested, actual, available))
        # The cached body stops inside the extensions object: the cost closes it.
        return (
            200,
            {"Content-Type": "application/json"},
            body + b'"cost":' + cost + b"}}",
        )

    def _cost(self, requested: int, actual: int | None, available: float) -> dict[str, Any]:
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": self.bucket.capacity,
                "currentlyAvailable": round(available, 1),
                "restoreRate": self.bucket.restore_rate,
            },
        }

    def _execute(
        self,
        document: str,
        ast: DocumentNode,
        variables: dict[str, Any],
        op_node: OperationDefinitionNode,
    ) -> tuple[bytes, int, int, list[str]]:
        key = (
            document,
            orjson.dumps(variables, option=orjson.OPT_SORT_KEYS),
            self.data.version,
            self.bulk.changes,
        )
        is_write = op_node.operation is OperationType.MUTATION
        cached = None if is_write else self._rendered.get(key)
        if cached is not None:
            self._rendered.move_to_end(key)
            return cached
        warnings: list[dict[str, Any]] = []
        result = self.run_document(ast, variables, warnings)
        response: dict[str, Any] = {"data": result.data}
        if result.errors:
            response["errors"] = [error.formatted for error in result.errors]
        actual = actual_cost(op_node.selection_set, result.data, CostRules(ast, variables))
        records = _count_nodes(result.data)
        # The body ends where extensions go: the cost is spliced in per answer, the search
        # warnings (the same for the same query) are part of what is cached.
        body = orjson.dumps(response)[:-1]
        if warnings:
            body += b',"extensions":{"search":' + orjson.dumps(warnings) + b","
        else:
            body += b',"extensions":{'
        rendered = (body, actual, records, [str(e.message) for e in result.errors or []])
        if is_write:
            return rendered
        self._rendered[key] = rendered
        if len(self._rendered) > 256:
            self._rendered.popitem(last=False)
        return rendered

    def control(self, action: str, payload: dict[str, Any]) -> Any:
        """``update``, ``touch``, ``set_available``, ``counts``, ``limits``, ``reset_log``, base
        actions."""
        if action == "update":
            record = self.data.update(
                payload["entity"],
                payload["id"],
                payload.get("changes"),
                updated_at=payload.get("updated_at"),
            )
            return _public(record, "Record")
        if action == "touch":
            return {"ids": self.data.touch(payload["entity"], int(payload["count"]))}
        if action == "set_available":
            record = self.data.set_available(
                payload["sku"], payload["location_id"], int(payload["available"])
            )
            return _public(record, "InventoryLevel")
        if action == "counts":
            return self.data.counts()
        if action == "limits":  # a shop changing plan mid-run (benchmarks, tests)
            self.bucket.set_limits(payload.get("bucket_size"), payload.get("restore_rate"))
            return {"bucket_size": self.bucket.capacity, "restore_rate": self.bucket.restore_rate}
        if action == "reset_log":
            self.log.clear()
            return {"ok": True}
        return super().control(action, payload)


def _count_nodes(data: Any) -> int:
    """Top-level connection nodes in a response (what a page 'returned')."""
    if not isinstance(data, dict):
        return 0
    total = 0
    for value in data.values():
        if isinstance(value, dict) and isinstance(value.get("nodes"), list):
            total += len(value["nodes"])
    return total
