"""WooCommerce REST API v3 connector (``/wp-json/wc/v3``).

Facts from WooCommerce's own documentation (woocommerce-rest-api-docs ``wp-api-v3``, summarised
with sources in ``shared/platforms/woocommerce.md``):

* **Reads** use ``modified_after`` with ``dates_are_gmt=true`` (otherwise the site's local time
  zone applies), ``orderby=modified&order=asc`` and ``per_page`` up to 100. ``modified_after``
  is strictly-after on second-precision times, and page numbers shift when records change
  during a walk, so pages are walked by *keyset*: each request asks for records modified after
  the newest time seen so far (less one second, the ties de-duplicated by id), and only a page
  whose records all share one second moves on by page number. A record changed mid-walk moves
  to the end of the order and is read there; none is skipped.
* **Products** with their variations (``/products/<id>/variations``, paged the same way);
  **inventory** is each stock-managed simple product and variation (WooCommerce has no
  locations: one location, ``default``); **orders**.
* **Stock writes** go through ``POST /products/batch`` and ``/products/<id>/variations/batch``
  (≤ 100 objects per request) as absolute ``stock_quantity`` with ``manage_stock``: no
  compare-and-set and no idempotency keys exist, but an absolute set is safe to repeat. Batch
  items fail one by one (``{"id", "error"}``); the others land.
* **Fulfilment** is the order set to ``completed`` plus the tracking: a tracking item of the
  Shipment Tracking extension where the store has it (``POST /wp-json/wc-shipment-tracking/v3/
  orders/<id>/shipment-trackings`` with a custom provider and link; found out by listing an
  order's items, a store without the extension answers 404 ``rest_no_route``), else a customer
  note carrying carrier and tracking number. A lost answer is verified by looking the tracking
  number up (tracking items or notes) before anything is sent again.
* **Auth**: HTTP Basic over HTTPS; OAuth 1.0a one-legged signatures over plain HTTP
  (:mod:`partnersync.auth.oauth1`). Errors are ``{"code", "message", "data": {"status"}}``; 429
  (hosts and plugins add rate limits) is honoured through ``Retry-After``.

Assumed (not documented): saving a variation also moves its parent product's
``date_modified`` (WooCommerce re-saves the parent to sync prices and stock status); an
incremental inventory pull relies on it — ``sync pull ACCOUNT inventory --full`` re-reads all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from partnersync.connectors.base import (
    AccountInfo,
    Capabilities,
    Connector,
    EntityCapability,
    InventoryWrite,
    InventoryWriteOutcome,
    Page,
    ProductWriteOutcome,
    Writer,
)
from partnersync.connectors.http.pagination import ModifiedKeyset
from partnersync.connectors.woocommerce.mappers import LOCATION, optional_gmt, stock_handle
from partnersync.errors import BadRequestError, BadResponseError, CapabilityError, NotFoundError
from partnersync.mapping.model import Shipment

API_PATH = "/wp-json/wc/v3"
TRACKING_PATH = "/wp-json/wc-shipment-tracking/v3"
MAX_PER_PAGE = 100
MAX_BATCH = 100
ONE_SECOND = timedelta(seconds=1)


def gmt_param(moment: datetime) -> str:
    """A time for ``modified_after`` with ``dates_are_gmt=true``."""
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()


class WooCommerceConnector(Connector):
    """Products, stock and orders of one WooCommerce store."""

    platform = "woocommerce"
    capabilities = Capabilities.of(
        EntityCapability(
            "products",
            sorted_by_cursor=True,
            page_limit=MAX_PER_PAGE,
            # Updates only (names, status, prices), through the batch endpoints: an absolute
            # set is safe to repeat. Creating a WooCommerce product is not built.
            writer=Writer(frozenset({"update"})),
        ),
        EntityCapability(
            "inventory",
            sorted_by_cursor=False,  # levels come with their products; their own times vary
            page_limit=MAX_PER_PAGE,
            writer=Writer(frozenset({"update"}), batch_limit=MAX_BATCH),
        ),
        EntityCapability("orders", sorted_by_cursor=True, page_limit=MAX_PER_PAGE),
        EntityCapability(
            "fulfillments",
            pull=False,
            incremental=False,
            writer=Writer(frozenset({"create"}), verified_by="tracking_number"),
        ),
    )

    def __init__(self, account: AccountInfo, **kwargs: Any) -> None:
        super().__init__(account, **kwargs)
        self.per_page = min(int(account.options.get("page_size", MAX_PER_PAGE)), MAX_PER_PAGE)
        self.http = self.http_client(account.base_url.rstrip("/") + API_PATH)
        self._currency: str | None = None
        self._tracking_root = account.base_url.rstrip("/") + TRACKING_PATH
        self._has_tracking: bool | None = None

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent, retries included."""
        return self.http.requests_sent

    async def _get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        _, body = await self.http.request_json("GET", path, params=params)
        return body

    async def prepare(self) -> None:
        """Learn the store currency once (``/data/currencies/current``)."""
        if self._currency is None:
            body = await self._get("/data/currencies/current")
            if not isinstance(body, dict) or not body.get("code"):
                raise BadResponseError("the store did not say its currency")
            self._currency = str(body["code"])

    def mapping_settings(self) -> dict[str, Any]:
        """The store currency, for prices."""
        return {"currency": self._currency} if self._currency else {}

    async def check(self) -> str:
        """One authenticated call."""
        await self.prepare()
        return f"WooCommerce store at {self.account.base_url} selling in {self._currency}"

    def record_handle(self, entity: str, record: Mapping[str, Any]) -> str | None:
        """Stock is written by ``product`` or ``product/variation`` (the batch endpoint)."""
        return stock_handle(record) if entity == "inventory" and record.get("id") else None

    def record_updated_at(self, entity: str, record: Mapping[str, Any]) -> datetime | None:
        """``date_modified_gmt``."""
        try:
            return optional_gmt(record.get("date_modified_gmt"))
        except ValueError:
            return None

    # -- reads ---------------------------------------------------------------------------
    async def stream(self, entity: str, *, since: datetime | None = None) -> AsyncIterator[Page]:
        """Pages of products (with variations), stock levels or orders."""
        await self.prepare()
        path = "/orders" if entity == "orders" else "/products"
        number = 0
        before = self.requests_sent
        async for records in self._walk(path, since):
            if entity == "products":
                records = [await self._with_variations(p) for p in records]
            elif entity == "inventory":
                records = await self._levels(records)
            number += 1
            spent, before = self.requests_sent - before, self.requests_sent
            yield Page(records=records, number=number, requests=spent)

    async def _walk(
        self, path: str, since: datetime | None, extra: Mapping[str, Any] | None = None
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Keyset walk in ``modified`` order (see the module docstring)."""
        walk = ModifiedKeyset(since)
        while True:
            params: dict[str, Any] = {
                "per_page": self.per_page,
                "page": walk.page,
                "orderby": "modified",
                "order": "asc",
                "dates_are_gmt": "true",
                **(extra or {}),
            }
            if walk.after is not None:  # modified_after is strict: one second back takes ties
                params["modified_after"] = gmt_param(walk.after - ONE_SECOND)
            body = await self._get(path, params)
            if not isinstance(body, list):
                raise BadResponseError(f"expected a list from {path}")
            fresh, more = walk.take(body, _identity, _modified, self.per_page)
            if fresh:
                yield fresh
            if not more:
                return

    async def _variations(self, product_id: Any) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self._get(
                f"/products/{product_id}/variations",
                {"per_page": self.per_page, "page": page, "orderby": "id", "order": "asc"},
            )
            if not isinstance(body, list):
                raise BadResponseError(f"expected a list of variations of {product_id}")
            records.extend(body)
            if len(body) < self.per_page:
                return records
            page += 1

    async def _with_variations(self, product: dict[str, Any]) -> dict[str, Any]:
        if product.get("type") != "variable":
            return product
        return {**product, "_variations": await self._variations(product["id"])}

    async def _levels(self, products: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One record per stock-managed simple product or variation."""
        levels = []
        for product in products:
            if product.get("type") == "variable":
                for variation in await self._variations(product["id"]):
                    if variation.get("manage_stock"):
                        levels.append({**variation, "_product_id": product["id"]})
            elif product.get("manage_stock"):
                levels.append({**product, "_product_id": product["id"]})
        return levels

    # -- writes --------------------------------------------------------------------------
    async def set_inventory(
        self, writes: Sequence[InventoryWrite], idempotency_key: str
    ) -> InventoryWriteOutcome:
        """Absolute stock through the batch endpoints, one request per parent product."""
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for index, write in enumerate(writes):
            if write.location_id != LOCATION:
                raise CapabilityError(
                    f"WooCommerce keeps one stock per item, not {write.location_id!r}"
                )
            product_id, _, variation_id = write.handle.partition("/")
            path = f"/products/{product_id}/variations/batch" if variation_id else "/products/batch"
            item = {
                "id": int(variation_id or product_id),
                "manage_stock": True,
                "stock_quantity": write.quantity,
            }
            groups.setdefault(path, []).append((index, item))
        rejected: dict[int, str] = {}
        for path, items in groups.items():
            for start in range(0, len(items), MAX_BATCH):
                chunk = items[start : start + MAX_BATCH]
                # An absolute set is safe to repeat, so the client may retry it.
                _, body = await self.http.request_json(
                    "POST", path, json={"update": [item for _, item in chunk]}, idempotent=True
                )
                answered = (body or {}).get("update") if isinstance(body, dict) else None
                if not isinstance(answered, list) or len(answered) != len(chunk):
                    raise BadResponseError(
                        f"{path} answered {len(answered or [])} of {len(chunk)} items"
                    )
                for (index, _), result in zip(chunk, answered, strict=True):
                    error = result.get("error") if isinstance(result, dict) else None
                    if error:
                        rejected[index] = f"{error.get('code')}: {error.get('message')}"
        return InventoryWriteOutcome(applied=not rejected, rejected=rejected)

    async def upsert_product(
        self, payload: Mapping[str, Any], external_id: str | None
    ) -> ProductWriteOutcome:
        """Update an existing product, then its variations, through the batch endpoints
        (``payload`` from :class:`WooProductExportMapper`)."""
        if not external_id:
            raise CapabilityError("creating WooCommerce products is not supported")
        await self._batch_update("/products/batch", [dict(payload["product"])])
        variations = list(payload.get("variations") or [])
        if variations:
            await self._batch_update(f"/products/{external_id}/variations/batch", variations)
        return ProductWriteOutcome(external_id=external_id)

    async def _batch_update(self, path: str, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), MAX_BATCH):
            chunk = items[start : start + MAX_BATCH]
            _, body = await self.http.request_json(
                "POST", path, json={"update": chunk}, idempotent=True
            )
            answered = (body or {}).get("update") if isinstance(body, dict) else None
            for result in answered if isinstance(answered, list) else []:
                error = result.get("error") if isinstance(result, dict) else None
                if error:
                    raise BadRequestError(
                        f"{path}: item {result.get('id')}: {error.get('code')}: "
                        f"{error.get('message')}"
                    )

    async def _trackings(self, order_external_id: str) -> list[dict[str, Any]] | None:
        """The order's Shipment Tracking items, or None when the store lacks the extension."""
        if self._has_tracking is False:
            return None
        url = f"{self._tracking_root}/orders/{order_external_id}/shipment-trackings"
        try:
            items = await self._get(url)
        except NotFoundError as exc:
            if "rest_no_route" not in str(exc):
                raise
            self._has_tracking = False
            return None
        self._has_tracking = True
        return list(items) if isinstance(items, list) else []

    async def find_fulfillment(self, order_external_id: str, tracking_number: str) -> str | None:
        """The tracking item (or else the order note) carrying this tracking number, if any."""
        items = await self._trackings(order_external_id)
        if items is not None:
            for item in items:
                if item.get("tracking_number") == tracking_number:
                    return str(item["tracking_id"])
            return None
        notes = await self._get(f"/orders/{order_external_id}/notes")
        for note in notes if isinstance(notes, list) else []:
            if tracking_number in str(note.get("note") or ""):
                return str(note["id"])
        return None

    async def create_fulfillment(self, order_external_id: str, shipment: Shipment) -> str:
        """The order marked ``completed`` (safe to repeat), then the tracking — an extension
        tracking item or a customer note (not safe to repeat: verified after a lost answer)."""
        if shipment.lines:
            raise BadRequestError(
                "WooCommerce has no partial fulfilments: a parcel with lines cannot be sent "
                f"to order {order_external_id}"
            )
        await self.http.request_json(
            "PUT", f"/orders/{order_external_id}", json={"status": "completed"}
        )
        carrier = shipment.carrier or "the carrier"
        if await self._trackings(order_external_id) is not None:
            _, item = await self.http.request_json(
                "POST",
                f"{self._tracking_root}/orders/{order_external_id}/shipment-trackings",
                json={
                    "tracking_number": shipment.tracking_number,
                    "custom_tracking_provider": carrier,
                    "custom_tracking_link": shipment.tracking_url or "",
                },
                idempotent=False,
            )
            return str((item or {}).get("tracking_id"))
        text = f"Shipped with {carrier}, tracking number {shipment.tracking_number}"
        if shipment.tracking_url:
            text += f" ({shipment.tracking_url})"
        _, note = await self.http.request_json(
            "POST",
            f"/orders/{order_external_id}/notes",
            json={"note": text, "customer_note": True},
            idempotent=False,
        )
        return str((note or {}).get("id"))


def _identity(record: Mapping[str, Any]) -> tuple[Any, Any]:
    return record.get("id"), record.get("date_modified_gmt")


def _modified(record: Mapping[str, Any]) -> datetime:
    stamp = optional_gmt(record.get("date_modified_gmt"))
    if stamp is None:
        raise BadResponseError(f"record {record.get('id')} carries no date_modified_gmt")
    return stamp
