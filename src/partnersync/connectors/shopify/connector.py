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

import anyio
import httpx
import orjson

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
    PullPlan,
    Writer,
)
from partnersync.connectors.http.client import HttpClient, RetryPolicy, shared_tls_context
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
    ConfigError,
    NotFoundError,
    PermissionDeniedError,
    PlatformUnavailableError,
    RateLimitedError,
)
from partnersync.mapping.convert import to_utc
from partnersync.mapping.model import Shipment

log = logging.getLogger("partnersync.shopify")

DEFAULT_API_VERSION = "2026-10"
NESTED_FIRST = 10
"""Nested records asked for with each record on the first page (later pages size it from what
the shop has)."""
BULK_THRESHOLD = 2000
"""Records changed (by Shopify's count) from which a pull runs as a bulk operation."""
BULK_TOKEN = "bulk:"
BULK_ATTEMPTS = 2
"""Bulk operations started for one walk when Shopify fails them (``INTERNAL_SERVER_ERROR``)."""


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
        nested_options = {
            "products": "variants_first",
            "inventory": "levels_first",
            "orders": "line_items_first",
        }
        self.nested_first = {
            entity: int(options.get(name, NESTED_FIRST)) for entity, name in nested_options.items()
        }
        self._nested_fixed = {e for e, name in nested_options.items() if name in options}
        self._nested_most = dict.fromkeys(nested_options, 0)
        """The most nested records (variants, levels, line items) any record seen had."""
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
        self.bulk_mode = str(options.get("bulk", "auto"))
        if self.bulk_mode not in ("auto", "always", "never"):
            raise ConfigError(f"option bulk must be auto, always or never, not {self.bulk_mode!r}")
        self.bulk_threshold = int(options.get("bulk_threshold", BULK_THRESHOLD))
        self.bulk_count_after = float(options.get("bulk_count_after_seconds", 3600))
        self.bulk_poll = float(options.get("bulk_poll_seconds", 2.0))
        self.bulk_timeout = float(options.get("bulk_timeout_seconds", 6 * 3600))
        self.bulk_queue = float(options.get("bulk_queue_seconds", 1800))
        self.allow_plain_http = bool(options.get("allow_loopback"))
        self._plans: dict[str, str] = {}
        self.bulk_operations: list[str] = []
        """Bulk operations this connector started (for logs and tests)."""
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

    async def plan_pull(self, entity: str, *, since: datetime | None = None) -> PullPlan:
        """Page through the API, or run a bulk operation when the pull is large: always with
        ``bulk=always``, never with ``bulk=never``, else when a cheap count of what changed
        since ``since`` reaches ``bulk_threshold`` (2,000 by default) — counted for full pulls
        and for windows older than ``bulk_count_after_seconds`` (an hour); the frequent small
        incrementals page at once. A bulk result comes in id order, so such a walk is unsorted
        and resumable."""
        capability = self.capabilities.require_pull(entity)
        paged = PullPlan(capability.sorted_by_cursor, capability.resumable)
        if self.bulk_mode == "never" or entity not in queries.COUNTS:
            return paged
        if self.bulk_mode == "auto":
            recent = since is not None and (
                (self.clock.now() - since).total_seconds() < self.bulk_count_after
            )
            if recent:
                return paged  # a frequent small incremental: not worth a count request
            count = await self.count(entity, since)
            if count < self.bulk_threshold:
                log.debug("%s: %s %s since %s: paging", self.account.name, count, entity, since)
                return paged
        self._plans[entity] = "bulk"
        return PullPlan(sorted_by_cursor=False, resumable=True, how="bulk")

    async def count(self, entity: str, since: datetime | None) -> int:
        """How many ``entity`` records changed at or after ``since`` (Shopify's own count;
        inventory is counted by variants, one inventory item each)."""
        data = await self.graphql(queries.COUNTS[entity], {"query": updated_since_query(since)})
        counted = next(iter(data.values())) if isinstance(data, dict) and data else None
        if not isinstance(counted, dict) or not isinstance(counted.get("count"), int):
            raise BadResponseError(f"count of {entity} has no number")
        return int(counted["count"])

    async def stream(self, entity: str, *, since: datetime | None = None) -> AsyncIterator[Page]:
        """Pages of products, inventory levels or orders updated at or after ``since`` (from a
        bulk operation when :meth:`plan_pull` chose one)."""
        if self._plans.pop(entity, None) == "bulk":
            async for page in self._bulk(entity, since, None):
                yield page
            return
        async for page in self._stream(entity, since, None):
            yield page

    async def stream_from(
        self, entity: str, resume: str, *, since: datetime | None = None
    ) -> AsyncIterator[Page]:
        """The rest of a walk: a bulk result from the line ``resume`` names, or a paged walk
        after the page whose ``endCursor`` is ``resume``."""
        self._plans.pop(entity, None)
        if resume.startswith(BULK_TOKEN):
            async for page in self._bulk(entity, since, resume):
                yield page
            return
        async for page in self._stream(entity, since, resume):
            yield page

    # -- bulk operations -------------------------------------------------------------------
    async def _bulk(
        self, entity: str, since: datetime | None, resume: str | None
    ) -> AsyncIterator[Page]:
        """A walk through a bulk operation's JSONL result (see :meth:`plan_pull`). A resumed
        walk reads the same result from the line after its last committed page while the file
        is there; an operation that fails, expires or cannot start falls back to paging."""
        if resume is not None:
            operation_id, _, line = resume.removeprefix(BULK_TOKEN).rpartition(":")
            found = await self._bulk_status(operation_id)
            if found.get("status") == "COMPLETED" and found.get("url"):
                try:
                    async for page in self._read_result(entity, found, int(line)):
                        yield page
                    return
                except _ResultGone as exc:
                    found = {**found, "status": f"COMPLETED, but its result is gone ({exc})"}
            log.info(
                "%s: bulk operation %s is %s: starting over",
                self.account.name,
                operation_id,
                found.get("status"),
            )
        operation = await self._run_bulk(entity, since)
        attempts = 1
        while operation is not None:
            status = operation.get("status")
            if status == "COMPLETED":
                if not operation.get("url"):
                    return  # nothing matched
                try:
                    async for page in self._read_result(entity, operation, 0):
                        yield page
                    return
                except _ResultGone as exc:
                    operation = {
                        **operation,
                        "status": f"COMPLETED, but its result is gone ({exc})",
                    }
                    break
            if status != "FAILED":
                break
            if operation.get("partialDataUrl"):
                # What Shopify wrote before the failure: its whole records land now (a later
                # read brings them again, unchanged, writing nothing).
                try:
                    async for page in self._read_result(entity, operation, 0, partial=True):
                        yield page
                except _ResultGone:
                    pass
            if operation.get("errorCode") != "INTERNAL_SERVER_ERROR" or attempts >= BULK_ATTEMPTS:
                break
            attempts += 1
            log.warning(
                "%s: bulk operation %s for %s failed on Shopify's side: starting another",
                self.account.name,
                operation.get("id"),
                entity,
            )
            operation = await self._run_bulk(entity, since)
        state = "could not start" if operation is None else str(operation.get("status"))
        log.warning(
            "%s: bulk operation for %s %s %s: paging through the API instead",
            self.account.name,
            entity,
            state,
            (operation or {}).get("errorCode") or "",
        )
        async for page in self._stream(entity, since, None):
            yield page

    async def _run_bulk(self, entity: str, since: datetime | None) -> dict[str, Any] | None:
        """Start the bulk query and wait for it to end; None if Shopify would not start it.
        While the shop runs as many bulk queries as the API version allows (one before 2026-01,
        five from it; ours for other entities or another process's), wait for a place, up to
        ``bulk_queue_seconds``: a bulk operation later is still far faster than paging."""
        async for queued in self._waits():
            data = await self.graphql(
                queries.BULK_RUN, {"query": queries.bulk_query(entity, updated_since_query(since))}
            )
            payload = data.get("bulkOperationRunQuery") or {}
            codes = {e.get("code") for e in payload.get("userErrors") or []}
            if codes != {"OPERATION_IN_PROGRESS"} or queued >= self.bulk_queue:
                break
            if queued == 0.0:
                log.info(
                    "%s: the shop's bulk queries are all in use: %s waits",
                    self.account.name,
                    entity,
                )
        errors = payload.get("userErrors") or []
        started = payload.get("bulkOperation")
        if errors or not isinstance(started, dict):
            log.warning(
                "%s: bulk operation refused: %s",
                self.account.name,
                "; ".join(str(e.get("message")) for e in errors)[:300],
            )
            return None
        self.bulk_operations.append(str(started["id"]))
        log.info("%s: bulk operation %s started for %s", self.account.name, started["id"], entity)
        async for waited in self._waits():
            status = await self._bulk_status(str(started["id"]))
            if status.get("status") not in ("CREATED", "RUNNING", "CANCELING"):
                break
            if waited > self.bulk_timeout:
                log.warning(
                    "%s: bulk operation %s still running after %.0f s",
                    self.account.name,
                    started["id"],
                    waited,
                )
                break
        return status

    async def _waits(self) -> AsyncIterator[float]:
        """The seconds waited so far: 0 at once, then after each pause (0.25 s, doubling up to
        ``bulk_poll_seconds``) — the pace of both bulk loops, asking for a place among the
        shop's bulk queries and asking how an operation goes."""
        waited, wait = 0.0, min(0.25, self.bulk_poll)
        while True:
            yield waited
            await anyio.sleep(wait)
            waited += wait
            wait = min(wait * 2, self.bulk_poll)

    async def _bulk_status(self, operation_id: str) -> dict[str, Any]:
        data = await self.graphql(queries.BULK_STATUS, {"id": operation_id})
        found = data.get("bulkOperation")
        return found if isinstance(found, dict) else {"id": operation_id, "status": "MISSING"}

    async def _read_result(
        self, entity: str, operation: dict[str, Any], skip: int, *, partial: bool = False
    ) -> AsyncIterator[Page]:
        """Stream the JSONL result (never held whole), reassemble each root object with its
        children (``__parentId``; grouped, so they follow it) and yield pages of whole roots;
        each page's token is the line its next root starts at. ``partial``: a failed
        operation's ``partialDataUrl``, whose last root may have lost children to the failure
        (it is left out, and the last page still names a place to go on from)."""
        url = str(operation["partialDataUrl" if partial else "url"])
        if urlsplit(url).scheme != "https" and not self.allow_plain_http:
            raise BadResponseError(f"bulk result URL is not https: {urlsplit(url).netloc}")
        nested = STREAMS[entity].nested_field
        token_of = f"{BULK_TOKEN}{operation['id']}:"
        batch: list[dict[str, Any]] = []
        current: dict[str, Any] | None = None
        current_line = 0
        number = 0
        async with (
            httpx.AsyncClient(
                transport=self.transport, verify=shared_tls_context(), timeout=60.0
            ) as files,
            files.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise _ResultGone(
                    f"bulk result answered HTTP {response.status_code}",
                    status_code=response.status_code,
                )
            line_number = -1
            async for line in _jsonl_lines(response):
                line_number += 1
                if line_number < skip or not line.strip():
                    continue
                row = orjson.loads(line)
                parent = row.pop("__parentId", None)
                if parent is not None and current is not None:
                    current[nested]["nodes"].append(row)
                    continue
                if current is not None:
                    batch.append(current)
                if len(batch) >= self.page_size_cap:
                    number += 1
                    yield self._bulk_page(entity, batch, number, token_of + str(line_number))
                    batch = []
                current = {**row, nested: {"nodes": [], "pageInfo": {"hasNextPage": False}}}
                current_line = line_number
        if current is not None and not partial:
            batch.append(current)
        if batch:
            number += 1
            yield self._bulk_page(
                entity, batch, number, token_of + str(current_line) if partial else None
            )

    @staticmethod
    def _bulk_page(
        entity: str, roots: list[dict[str, Any]], number: int, token: str | None
    ) -> Page:
        records = _flatten_levels(roots) if entity == "inventory" else roots
        return Page(records=records, number=number, requests=0, resume_token=token)

    async def _stream(
        self, entity: str, since: datetime | None, after: str | None
    ) -> AsyncIterator[Page]:
        await self.prepare()
        stream = STREAMS[entity]
        async for page in self._walk(
            entity, stream, {stream.nested_variable: self.nested_first[entity]}, since, after
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
        entity: str,
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
            request.json = self._resized(entity, stream, nodes, request.json or {})
            number += 1
            spent, before = self.requests_sent - before, self.requests_sent
            info = connection.get("pageInfo") or {}
            yield Page(
                records=nodes,
                number=number,
                requests=spent,
                resume_token=info.get("endCursor") if info.get("hasNextPage") else None,
            )

    def _resized(
        self,
        entity: str,
        stream: ShopifyStream,
        nodes: list[dict[str, Any]],
        body: dict[str, Any],
    ) -> dict[str, Any]:
        """The next page's request, its nested ``first`` sized from what the shop really has
        (the most any record seen so far had: a larger batch costs only logarithmically more,
        while a record that overflows it costs a ``node(id:)`` request of its own) and its
        page size grown into the cost that frees: requested cost then tracks actual cost. A
        nested size set in the account's options is kept."""
        if entity in self._nested_fixed:
            return body
        for node in nodes:
            nested = node.get(stream.nested_field)
            if isinstance(nested, dict) and isinstance(nested.get("nodes"), list):
                self._nested_most[entity] = max(self._nested_most[entity], len(nested["nodes"]))
        if not self._nested_most[entity]:
            return body  # nothing seen yet: keep the first batch's size
        wanted = min(self._nested_most[entity], MAX_PAGE_SIZE)
        variables = dict(body.get("variables") or {})
        if wanted == variables.get(stream.nested_variable):
            return body
        self.nested_first[entity] = wanted
        variables[stream.nested_variable] = wanted
        variables["first"] = self.page_size(stream.document, variables)
        return {**body, "variables": variables}

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


async def _jsonl_lines(response: httpx.Response) -> AsyncIterator[bytes]:
    """The lines of a JSONL body as bytes, split as the chunks arrive (orjson parses bytes;
    decoding each line to text first cost a fifth of reading a bulk result)."""
    rest = b""
    async for chunk in response.aiter_bytes():
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            yield line
    if rest:
        yield rest


class _ResultGone(PlatformUnavailableError):
    """A bulk operation's result file could not be fetched (its URL expired or failed)."""


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
