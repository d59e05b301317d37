"""Shopify connector on the GraphQL Admin API (REST is legacy for new apps; see shopify.md).

* Endpoint ``POST {base}/admin/api/{version}/graphql.json``; version pinned per account
  (default 2026-10); auth ``X-Shopify-Access-Token`` through :class:`HeaderTokenAuth`.
* Incremental pulls filter with the search syntax ``updated_at:>='…'`` and sort by
  ``UPDATED_AT`` where the connection allows (products, orders). ``inventoryItems`` has no
  sort key, so inventory declares ``sorted_by_cursor=False`` and the engine checkpoints at the end.
* Pages follow ``pageInfo.endCursor``; each page is sized with :func:`largest_page` so the
  requested cost stays under the 1,000-point single-query maximum (250 is the hard cap). A
  product with more variants than the first nested batch (an inventory item with more levels,
  an order with more line items) has the rest paged through ``node(id:)``.
* Cost-based throttling: before each query the connector's :class:`TokenBucket` must hold the
  query's requested cost; every response's ``extensions.cost.throttleStatus`` resets the bucket
  to Shopify's own numbers. A ``THROTTLED`` answer (HTTP 200 with errors, or 429) is retried
  after ``(requested − currentlyAvailable) / restoreRate`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from partnersync.clock import Clock
from partnersync.connectors.base import (
    AccountInfo,
    BudgetFactory,
    Capabilities,
    Connector,
    EntityCapability,
    InventoryWrite,
    InventoryWriteOutcome,
    Page,
    ProductWriteOutcome,
    Writer,
)
from partnersync.connectors.http.client import HttpClient, RetryPolicy
from partnersync.connectors.http.pagination import GraphQLCursorPaginator, RequestSpec, paginate
from partnersync.connectors.http.ratelimit import RateBudget
from partnersync.connectors.shopify import queries
from partnersync.connectors.shopify.cost import (
    MAX_PAGE_SIZE,
    SINGLE_QUERY_MAX_COST,
    largest_page,
    requested_cost,
)
from partnersync.errors import (
    BadRequestError,
    BadResponseError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitedError,
)
from partnersync.mapping.convert import to_utc
from partnersync.mapping.model import Shipment

log = logging.getLogger("partnersync.shopify")

DEFAULT_API_VERSION = "2026-10"


def format_search_time(moment: datetime) -> str:
    """A timestamp as Shopify's search syntax expects it (UTC, ``Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def updated_since_query(since: datetime | None) -> str | None:
    """The ``query`` argument for records updated at or after ``since``."""
    if since is None:
        return None
    return f"updated_at:>='{format_search_time(since)}'"


@dataclass(frozen=True)
class ShopifyStream:
    """How one entity is read: its query, root connection and nested connection."""

    document: str
    root: str
    nested_field: str
    nested_variable: str
    nested_document: str


STREAMS = {
    "products": ShopifyStream(
        queries.PRODUCTS, "products", "variants", "variantsFirst", queries.PRODUCT_VARIANTS
    ),
    "inventory": ShopifyStream(
        queries.INVENTORY_ITEMS,
        "inventoryItems",
        "inventoryLevels",
        "levelsFirst",
        queries.INVENTORY_ITEM_LEVELS,
    ),
    "orders": ShopifyStream(
        queries.ORDERS, "orders", "lineItems", "lineItemsFirst", queries.ORDER_LINE_ITEMS
    ),
}
"""Entity → stream; inventory pages are flattened to one record per level."""


class ShopifyConnector(Connector):
    """Pulls products (with all variants), inventory levels and orders from one shop."""

    platform = "shopify"
    capabilities = Capabilities.of(
        EntityCapability(
            "products",
            sorted_by_cursor=True,
            page_limit=MAX_PAGE_SIZE,
            # productSet upserts one product (by id, or by handle when new); no @idempotent.
            writer=Writer(frozenset({"create", "update"}), verified_by="handle"),
        ),
        EntityCapability(
            "inventory",
            sorted_by_cursor=False,
            # inventoryItems is walked in id order: a page's endCursor stays a valid place to
            # go on from, so an interrupted walk resumes there.
            resumable=True,
            page_limit=MAX_PAGE_SIZE,
            # inventorySetQuantities: 250 quantities (the input-array limit), @idempotent(key:),
            # changeFromQuantity; all or none.
            writer=Writer(
                frozenset({"update"}),
                batch_limit=250,
                idempotency_keys=True,
                compare_and_set=True,
                all_or_none=True,
            ),
        ),
        EntityCapability("orders", sorted_by_cursor=True, page_limit=MAX_PAGE_SIZE),
        EntityCapability(
            "fulfillments",
            pull=False,
            incremental=False,
            writer=Writer(frozenset({"create"}), verified_by="tracking_number"),
        ),
    )

    def __init__(
        self,
        account: AccountInfo,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        budgets: BudgetFactory | None = None,
    ) -> None:
        super().__init__(account, auth=auth, transport=transport, clock=clock, budgets=budgets)
        options = account.options
        self.api_version = account.api_version or DEFAULT_API_VERSION
        self._version_warned = False
        self.max_query_cost = int(options.get("max_query_cost", SINGLE_QUERY_MAX_COST))
        self.page_size_cap = int(options.get("page_size", MAX_PAGE_SIZE))
        self.nested_first = {
            "products": int(options.get("variants_first", 10)),
            "inventory": int(options.get("levels_first", 10)),
            "orders": int(options.get("line_items_first", 10)),
        }
        self.limiter: RateBudget | None = (
            self.rate_budget(
                urlsplit(account.base_url).netloc,  # Shopify counts per app and shop
                float(options.get("bucket_size", 1000)),
                float(options.get("restore_rate", 100)),
            )
            if options.get("pace", True)
            else None
        )
        self.throttled = 0
        self._currency: str | None = None
        self._shop_name: str | None = None
        self.http = HttpClient(
            account.base_url.rstrip("/"),
            auth=auth,
            limiter=self.limiter,
            retry=RetryPolicy(max_attempts=int(options.get("max_attempts", 6))),
            clock=self.clock,
            transport=self.transport,
            timeout=float(options.get("timeout", 30.0)),
        )
        self.endpoint = f"/admin/api/{self.api_version}/graphql.json"

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    @property
    def requests_sent(self) -> int:
        """GraphQL requests sent, retries included."""
        return self.http.requests_sent

    def record_updated_at(self, entity: str, record: Mapping[str, Any]) -> datetime | None:
        """``updatedAt`` of a product, order or inventory level, when it parses."""
        try:
            return to_utc(record.get("updatedAt"))
        except ValueError:
            return None

    def record_handle(self, entity: str, record: Mapping[str, Any]) -> str | None:
        """An inventory level is written through its item (``inventorySetQuantities``)."""
        if entity != "inventory":
            return None
        item = record.get("item")
        return str(item["id"]) if isinstance(item, dict) and item.get("id") else None

    def mapping_settings(self) -> dict[str, Any]:
        """The shop currency, which variant prices are expressed in."""
        return {"currency": self._currency} if self._currency else {}

    # -- transport ---------------------------------------------------------------------------
    def _check(self, response: httpx.Response, body: Any) -> None:
        """Read throttle status and GraphQL errors out of a response body."""
        served = response.headers.get("X-Shopify-API-Version")
        if served and served != self.api_version and not self._version_warned:
            # Shopify answers a retired version with the oldest supported one, silently.
            self._version_warned = True
            log.warning(
                "%s: asked for API version %s, Shopify answered with %s (the one asked for is "
                "no longer supported): set the account's api_version",
                self.account.name,
                self.api_version,
                served,
            )
        if not isinstance(body, dict):
            if response.status_code < 400:
                raise BadResponseError(
                    f"expected a JSON object from {self.endpoint}", status_code=response.status_code
                )
            return
        extensions = body.get("extensions")
        cost = extensions.get("cost") if isinstance(extensions, dict) else None
        status = cost.get("throttleStatus") if isinstance(cost, dict) else None
        if isinstance(status, dict) and self.limiter is not None:
            requested = float(cost.get("requestedQueryCost") or 0)  # type: ignore[union-attr]
            actual = cost.get("actualQueryCost")  # type: ignore[union-attr]
            self.limiter.observe(
                float(status.get("currentlyAvailable", 0)),
                float(status.get("maximumAvailable") or 0) or None,
                float(status.get("restoreRate") or 0) or None,
                # A throttled query is not charged: its whole reservation comes back.
                refund=max(0.0, requested - float(actual or 0)),
            )
        errors = body.get("errors")
        if not errors or isinstance(errors, str):
            if response.status_code < 400 and not isinstance(body.get("data"), dict):
                raise BadResponseError("GraphQL response has no data", status_code=200)
            return
        codes = {
            (err.get("extensions") or {}).get("code") for err in errors if isinstance(err, dict)
        }
        if "THROTTLED" in codes:
            self.throttled += 1
            raise RateLimitedError(
                "Shopify THROTTLED the query",
                status_code=response.status_code,
                retry_after=_throttle_wait(cost, status),
            )
        if response.status_code >= 400:
            return
        messages = "; ".join(str(err.get("message")) for err in errors if isinstance(err, dict))[
            :500
        ]
        if "MAX_COST_EXCEEDED" in codes:
            raise BadRequestError(f"query cost over the single-query maximum: {messages}")
        if "ACCESS_DENIED" in codes:
            raise PermissionDeniedError(f"access denied: {messages}")
        raise BadResponseError(f"GraphQL errors: {messages}")

    async def _fetch(self, request: RequestSpec) -> tuple[httpx.Response, Any]:
        payload = request.json or {}
        cost = requested_cost(payload["query"], payload.get("variables") or {})
        return await self.http.request_json(
            "POST", self.endpoint, json=payload, cost=cost, check=self._check
        )

    async def graphql(self, document: str, variables: Mapping[str, Any] | None = None) -> Any:
        """Run one query and return its ``data``."""
        _, body = await self._fetch(
            RequestSpec("POST", self.endpoint, json={"query": document, "variables": variables})
        )
        return body["data"]

    # -- operations --------------------------------------------------------------------------
    async def check(self) -> str:
        """Fetch the shop's name and currency."""
        await self._load_shop()
        return f"{self._shop_name} ({self._currency})"

    async def _load_shop(self) -> None:
        data = await self.graphql(queries.SHOP)
        shop = data.get("shop") if isinstance(data, dict) else None
        if not isinstance(shop, dict) or not shop.get("currencyCode"):
            raise BadResponseError("the shop query returned no shop currency")
        self._shop_name = str(shop.get("name"))
        self._currency = str(shop.get("currencyCode"))

    async def prepare(self) -> None:
        """Load the shop currency once."""
        if self._currency is None:
            await self._load_shop()

    async def stream(self, entity: str, *, since: datetime | None = None) -> AsyncIterator[Page]:
        """Pages of products, inventory levels or orders updated at or after ``since``."""
        async for page in self._stream(entity, since, None):
            yield page

    async def stream_from(
        self, entity: str, resume: str, *, since: datetime | None = None
    ) -> AsyncIterator[Page]:
        """The rest of an inventory walk, after the page whose ``endCursor`` is ``resume``."""
        async for page in self._stream(entity, since, resume):
            yield page

    async def _stream(
        self, entity: str, since: datetime | None, after: str | None
    ) -> AsyncIterator[Page]:
        await self.prepare()
        stream = STREAMS[entity]
        async for page in self._walk(
            stream, {stream.nested_variable: self.nested_first[entity]}, since, after
        ):
            if entity == "inventory":
                page.records = _flatten_levels(page.records)
            yield page

    # -- writes ------------------------------------------------------------------------------
    async def _mutate(
        self, document: str, variables: Mapping[str, Any], *, idempotent: bool
    ) -> dict[str, Any]:
        """One mutation; only mutations carrying an idempotency key are retried blindly."""
        _, body = await self.http.request_json(
            "POST",
            self.endpoint,
            json={"query": document, "variables": variables},
            cost=requested_cost(document, variables),
            check=self._check,
            idempotent=idempotent,
        )
        data: dict[str, Any] = body["data"]
        return data

    async def set_inventory(
        self, writes: Sequence[InventoryWrite], idempotency_key: str
    ) -> InventoryWriteOutcome:
        """``inventorySetQuantities`` with ``changeFromQuantity`` and ``@idempotent(key:)``."""
        variables = {
            "key": idempotency_key,
            "input": {
                "name": "available",
                "reason": "correction",
                "referenceDocumentUri": f"gid://partnersync/InventorySync/{idempotency_key}",
                "quantities": [
                    {
                        "inventoryItemId": w.handle,
                        "locationId": w.location_id,
                        "quantity": w.quantity,
                        "changeFromQuantity": w.change_from,
                    }
                    for w in writes
                ],
            },
        }
        data = await self._mutate(queries.SET_INVENTORY, variables, idempotent=True)
        payload = data.get("inventorySetQuantities") or {}
        errors = payload.get("userErrors") or []
        if not errors:
            return InventoryWriteOutcome(applied=True)
        stale: list[int] = []
        rejected: dict[int, str] = {}
        others: list[str] = []
        for err in errors:
            index = _quantity_index(err.get("field"))
            reason = f"{err.get('code')}: {err.get('message')}"
            if index is None:
                others.append(reason)
            elif err.get("code") == "CHANGE_FROM_QUANTITY_STALE":
                stale.append(index)
            else:
                rejected[index] = reason
        return InventoryWriteOutcome(
            applied=False, stale=tuple(stale), errors=tuple(others), rejected=rejected
        )

    async def read_inventory(self, handles: Sequence[str]) -> list[dict[str, Any]]:
        """Each item's levels, fresh, flattened like a pull."""
        items: list[dict[str, Any]] = []
        for item_id in handles:
            size = largest_page(queries.READ_ITEM_LEVELS, {"id": item_id})
            data = await self.graphql(queries.READ_ITEM_LEVELS, {"id": item_id, "first": size})
            node = (data or {}).get("node")
            if isinstance(node, dict):
                items.append(node)
        return _flatten_levels(items)

    @staticmethod
    def _product_outcome(product: Any) -> ProductWriteOutcome | None:
        if not isinstance(product, dict) or not product.get("id"):
            return None
        variants = (product.get("variants") or {}).get("nodes") or []
        return ProductWriteOutcome(
            external_id=str(product["id"]),
            variant_ids={v["sku"]: v["id"] for v in variants if v.get("sku")},
        )

    async def upsert_product(
        self, payload: Mapping[str, Any], external_id: str | None
    ) -> ProductWriteOutcome:
        """``productSet`` by id, or by handle for a new product (an upsert: a repeat is safe)."""
        identifier = {"id": external_id} if external_id else {"handle": payload.get("handle")}
        variables = {"input": dict(payload), "identifier": identifier}
        data = await self._mutate(queries.PRODUCT_SET, variables, idempotent=False)
        payload = _accepted(data, "productSet")
        outcome = self._product_outcome(payload.get("product"))
        if outcome is None:
            raise BadResponseError("productSet returned no product")
        return outcome

    async def find_product(self, handle: str) -> ProductWriteOutcome | None:
        """``productByIdentifier(handle:)``."""
        data = await self.graphql(queries.PRODUCT_BY_HANDLE, {"handle": handle})
        return self._product_outcome((data or {}).get("productByIdentifier"))

    async def _fulfillment_state(self, order_external_id: str) -> dict[str, Any]:
        data = await self.graphql(queries.ORDER_FULFILLMENT_STATE, {"id": order_external_id})
        order = (data or {}).get("order")
        if not isinstance(order, dict):
            raise NotFoundError(f"order {order_external_id} not found")
        return order

    async def find_fulfillment(self, order_external_id: str, tracking_number: str) -> str | None:
        """The order's fulfillment whose tracking numbers include ``tracking_number``."""
        order = await self._fulfillment_state(order_external_id)
        for fulfillment in order.get("fulfillments") or []:
            numbers = {t.get("number") for t in fulfillment.get("trackingInfo") or []}
            if tracking_number in numbers:
                return str(fulfillment["id"])
        return None

    async def create_fulfillment(self, order_external_id: str, shipment: Shipment) -> str:
        """``fulfillmentCreate`` over the order's open fulfillment orders, with tracking: the
        shipment's lines (SKU × quantity) when it has them, else everything left."""
        order = await self._fulfillment_state(order_external_id)
        open_orders = [
            fo
            for fo in (order.get("fulfillmentOrders") or {}).get("nodes") or []
            if fo.get("status") in ("OPEN", "IN_PROGRESS")
        ]
        groups = _fulfillment_groups(order_external_id, open_orders, shipment)
        if not groups:
            raise BadRequestError(f"order {order_external_id} has nothing left to fulfil")
        tracking = {
            "company": shipment.carrier,
            "number": shipment.tracking_number,
            "url": shipment.tracking_url,
        }
        variables = {
            "fulfillment": {
                "lineItemsByFulfillmentOrder": groups,
                "trackingInfo": tracking,
                "notifyCustomer": False,
            }
        }
        data = await self._mutate(queries.FULFILLMENT_CREATE, variables, idempotent=False)
        payload = _accepted(data, "fulfillmentCreate")
        return str((payload.get("fulfillment") or {}).get("id"))

    def page_size(self, document: str, variables: Mapping[str, Any]) -> int:
        """Largest page keeping the requested cost under the configured maximum."""
        size = largest_page(document, variables, max_cost=self.max_query_cost)
        return min(size, self.page_size_cap)

    async def _walk(
        self,
        stream: ShopifyStream,
        extra: dict[str, Any],
        since: datetime | None,
        after: str | None = None,
    ) -> AsyncIterator[Page]:
        document, root = stream.document, stream.root
        variables: dict[str, Any] = {"query": updated_since_query(since), **extra}
        variables["first"] = self.page_size(document, variables)
        if after is not None:
            variables["after"] = after
        request = RequestSpec(
            "POST", self.endpoint, json={"query": document, "variables": variables}
        )
        paginator = GraphQLCursorPaginator(page_info_path=("data", root, "pageInfo"))
        number = 0
        before = self.requests_sent
        async for _, body in paginate(self._fetch, request, paginator):
            connection = (body.get("data") or {}).get(root)
            if not isinstance(connection, dict):
                raise BadResponseError(f"response has no {root} connection")
            nodes = connection.get("nodes")
            if not isinstance(nodes, list):
                raise BadResponseError(f"{root}.nodes is not a list")
            for node in nodes:
                await self._complete_nested(node, stream.nested_field, stream.nested_document)
            number += 1
            spent, before = self.requests_sent - before, self.requests_sent
            info = connection.get("pageInfo") or {}
            yield Page(
                records=nodes,
                number=number,
                requests=spent,
                resume_token=info.get("endCursor") if info.get("hasNextPage") else None,
            )

    async def _complete_nested(self, node: dict[str, Any], field: str, document: str) -> None:
        """Page the rest of a nested connection that did not fit the first batch."""
        connection = node.get(field)
        if not isinstance(connection, dict):
            return
        info = connection.get("pageInfo") or {}
        if not info.get("hasNextPage"):
            return
        size = largest_page(document, {"id": node["id"]}, max_cost=self.max_query_cost)
        request = RequestSpec(
            "POST",
            self.endpoint,
            json={
                "query": document,
                "variables": {"id": node["id"], "first": size, "after": info.get("endCursor")},
            },
        )
        paginator = GraphQLCursorPaginator(page_info_path=("data", "node", field, "pageInfo"))
        async for _, body in paginate(self._fetch, request, paginator):
            node_data = (body.get("data") or {}).get("node")
            more = node_data.get(field) if isinstance(node_data, dict) else None
            if not isinstance(more, dict) or not isinstance(more.get("nodes"), list):
                raise BadResponseError(f"{node['id']}: response has no {field} connection")
            connection["nodes"].extend(more["nodes"])
        connection["pageInfo"] = {"hasNextPage": False, "endCursor": None}


def _accepted(data: Mapping[str, Any], mutation: str) -> dict[str, Any]:
    """A mutation's payload, or BadRequestError with its ``userErrors``."""
    payload: dict[str, Any] = data.get(mutation) or {}
    errors = payload.get("userErrors") or []
    if errors:
        messages = "; ".join(str(e.get("message")) for e in errors)
        raise BadRequestError(f"{mutation} refused: {messages}")
    return payload


def _fulfillment_groups(
    order_id: str, open_orders: list[dict[str, Any]], shipment: Shipment
) -> list[dict[str, Any]]:
    """``lineItemsByFulfillmentOrder`` for a shipment: its lines taken from the open
    fulfillment-order lines of the same SKU, or every remaining line when it has none."""
    wanted: dict[str, int] = {}
    for line in shipment.lines:
        wanted[line.sku] = wanted.get(line.sku, 0) + line.quantity
    groups = []
    for fo in open_orders:
        items = []
        for line in (fo.get("lineItems") or {}).get("nodes") or []:
            left = int(line.get("remainingQuantity") or 0)
            if not left:
                continue
            if not shipment.lines:
                items.append({"id": line["id"], "quantity": left})
                continue
            take = min(left, wanted.get(str(line.get("sku")), 0))
            if take:
                items.append({"id": line["id"], "quantity": take})
                wanted[str(line["sku"])] -= take
        if items:
            groups.append({"fulfillmentOrderId": fo["id"], "fulfillmentOrderLineItems": items})
    short = {sku: count for sku, count in wanted.items() if count}
    if short:
        missing = ", ".join(f"{count} × {sku}" for sku, count in sorted(short.items()))
        raise BadRequestError(
            f"order {order_id} has no open lines left for {missing} of parcel "
            f"{shipment.tracking_number}"
        )
    return groups


def _quantity_index(field: Any) -> int | None:
    """The index in ``input.quantities`` a user error points at (``["input", "quantities", "2",
    …]``), if it points at one."""
    if isinstance(field, list) and len(field) > 2 and field[1] == "quantities":
        try:
            return int(field[2])
        except (TypeError, ValueError):
            return None
    return None


def _throttle_wait(cost: Any, status: Any) -> float | None:
    if not isinstance(cost, dict) or not isinstance(status, dict):
        return None
    try:
        needed = float(cost.get("requestedQueryCost") or 0)
        available = float(status.get("currentlyAvailable") or 0)
        rate = float(status.get("restoreRate") or 0)
    except (TypeError, ValueError):
        return None
    if rate <= 0:
        return None
    return max(0.0, (needed - available) / rate)


def _flatten_levels(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per inventory level, carrying its item as ``InventoryLevel.item`` does."""
    levels: list[dict[str, Any]] = []
    for item in items:
        connection = item.get("inventoryLevels") or {}
        header = {"id": item.get("id"), "sku": item.get("sku"), "updatedAt": item.get("updatedAt")}
        for level in connection.get("nodes") or []:
            levels.append({**level, "item": header})
    return levels
