"""A loopback WooCommerce store speaking the REST API v3 (``/wp-json/wc/v3``).

Written from WooCommerce's own documentation (woocommerce-rest-api-docs, ``wp-api-v3``; notes in
``shared/platforms/woocommerce.md``), never from the connector:

* **Auth over plain HTTP is OAuth 1.0a "one-legged"**: ``oauth_consumer_key``,
  ``oauth_timestamp``, ``oauth_nonce``, ``oauth_signature_method`` (HMAC-SHA1 or HMAC-SHA256)
  and ``oauth_signature`` in the query string; the signing key is the consumer secret plus
  ``&``; the base string is ``METHOD&pct(url)&pct(sorted, encoded parameters)``; a timestamp
  more than 15 minutes off, a reused nonce or a wrong signature answers 401. HTTP Basic is only
  accepted over HTTPS, so this plain-HTTP store refuses it.
* **Lists**: ``page`` (from 1) and ``per_page`` (default 10, at most 100, else 400
  ``rest_invalid_param``); ``X-WP-Total``, ``X-WP-TotalPages`` and an RFC 5988 ``Link`` header;
  ``modified_after`` (strictly after) read in the site's time zone unless ``dates_are_gmt=true``;
  ``orderby=modified`` and ``order=asc|desc`` (default ``desc``, by date).
* **Batches** (``POST …/batch``): at most 100 objects per request (413
  ``woocommerce_rest_request_entity_too_large``); each object succeeds or carries its own
  ``error`` — a batch is not all-or-none.
* **Errors**: ``{"code", "message", "data": {"status"}}``.
* **Webhooks** (``POST/GET /webhooks``, ``DELETE /webhooks/<id>``): a merchant's or the API's
  change of a product (or its variation) or an order is delivered to each active webhook of
  its topic, signed ``X-WC-Webhook-Signature`` = base64(HMAC-SHA256(secret, body)) with the
  ``X-WC-Webhook-Source/-Topic/-Resource/-Event/-ID/-Delivery-ID`` headers; a webhook is
  disabled after 5 failed deliveries in a row; the secret is never shown again.

The site's time zone is Asia/Shanghai (UTC+8), so a client that forgets ``dates_are_gmt`` asks
for the wrong window and a test shows it. Knobs: ``throttle_every`` answers every Nth request
with 429 and ``Retry-After`` (WooCommerce core has no rate limit; hosts and security plugins
add one), plus the shared fault knobs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import random
import secrets
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import httpx
import orjson

from partnersync.sandbox.framework import DROP, Reply, Sandbox, json_reply
from partnersync.sandbox.webhooks import Delivery, WebhookSender

PREFIX = "/wp-json/wc/v3"
TRACKING_PREFIX = "/wp-json/wc-shipment-tracking/v3"
"""The Shipment Tracking extension's namespace (served when the store has the extension)."""
SITE_OFFSET = timedelta(hours=8)  # the site's time zone: Asia/Shanghai
MAX_PER_PAGE = 100
MAX_BATCH = 100
TIMESTAMP_WINDOW = 15 * 60


def wc_time(moment: datetime) -> str:
    """WooCommerce's date format: ISO-8601 without a zone suffix."""
    return moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()


def _pct(value: str) -> str:
    return quote(value, safe="-._~")


def _error(status: int, code: str, message: str) -> Reply:
    return json_reply(status, {"code": code, "message": message, "data": {"status": status}})


class WooCommerceData:
    """Products (simple and variable, with variations), orders and order notes of one store."""

    def __init__(
        self, *, seed: int = 11, products: int = 30, orders: int = 20, currency: str = "USD"
    ) -> None:
        self.lock = threading.RLock()
        self.currency = currency
        self.products: dict[int, dict[str, Any]] = {}
        self.variations: dict[int, dict[str, Any]] = {}
        self.orders: dict[int, dict[str, Any]] = {}
        self.notes: dict[int, list[dict[str, Any]]] = {}
        self.observers: list[Callable[[str, dict[str, Any]], None]] = []
        """Called with (resource, record) after a merchant's change (webhooks listen)."""
        self._rng = random.Random(seed)
        self._next_id = 100
        past = self.now() - timedelta(days=20)
        for index in range(products):
            self._generate_product(index, past)
        for index in range(orders):
            self._generate_order(index, past)

    def now(self) -> datetime:
        """The store's clock, second precision (MySQL DATETIME)."""
        return datetime.now(UTC).replace(microsecond=0)

    def new_id(self) -> int:
        """The next post id (products, variations and orders share one sequence)."""
        self._next_id += 1
        return self._next_id

    def _stamp(self, base: datetime) -> dict[str, str]:
        span = int((self.now() - timedelta(hours=1) - base).total_seconds())
        moment = base + timedelta(seconds=self._rng.randint(0, max(span, 0)))
        return self._dates(moment, created=True)

    @staticmethod
    def _dates(moment: datetime, *, created: bool = False) -> dict[str, str]:
        dates = {
            "date_modified": wc_time(moment + SITE_OFFSET),
            "date_modified_gmt": wc_time(moment),
        }
        if created:
            dates |= {
                "date_created": wc_time(moment + SITE_OFFSET),
                "date_created_gmt": wc_time(moment),
            }
        return dates

    def _generate_product(self, index: int, base: datetime) -> None:
        product_id = self.new_id()
        variable = index % 3 == 2
        price = f"{self._rng.randint(5, 90)}.{self._rng.choice(['00', '50', '99'])}"
        product: dict[str, Any] = {
            "id": product_id,
            "name": f"Woo product {index}",
            "slug": f"woo-product-{index}",
            "type": "variable" if variable else "simple",
            "status": "draft" if index % 7 == 6 else "publish",
            "description": f"<p>Product {index}</p>",
            "short_description": "",
            "sku": "" if variable else f"WOO-{index:04d}",
            "price": "" if variable else price,
            "regular_price": "" if variable else price,
            "sale_price": "",
            "manage_stock": not variable,
            "stock_quantity": None if variable else self._rng.randint(0, 40),
            "stock_status": "instock",
            "categories": [{"id": 9, "name": "Clothing", "slug": "clothing"}],
            "tags": [{"id": 5, "name": "sandbox", "slug": "sandbox"}],
            "attributes": [],
            "variations": [],
            "parent_id": 0,
            **self._stamp(base),
        }
        if variable:
            colours = ["Black", "Green", "Red"][: self._rng.randint(2, 3)]
            product["attributes"] = [
                {
                    "id": 6,
                    "name": "Color",
                    "position": 0,
                    "visible": True,
                    "variation": True,
                    "options": colours,
                }
            ]
            for colour in colours:
                variation_id = self.new_id()
                self.variations[variation_id] = {
                    "id": variation_id,
                    "parent_id": product_id,
                    "sku": f"WOO-{index:04d}-{colour[:3].upper()}",
                    "price": price,
                    "regular_price": price,
                    "sale_price": "",
                    "status": "publish",
                    "manage_stock": True,
                    "stock_quantity": self._rng.randint(0, 40),
                    "stock_status": "instock",
                    "attributes": [{"id": 6, "name": "Color", "option": colour}],
                    "date_created": product["date_created"],
                    "date_created_gmt": product["date_created_gmt"],
                    "date_modified": product["date_modified"],
                    "date_modified_gmt": product["date_modified_gmt"],
                }
                product["variations"].append(variation_id)
        self.products[product_id] = product

    def _generate_order(self, index: int, base: datetime) -> None:
        order_id = self.new_id()
        sellable = [p for p in self.products.values() if p["type"] == "simple"] + [
            {
                **v,
                "name": f"{self.products[v['parent_id']]['name']} - {v['attributes'][0]['option']}",
            }
            for v in self.variations.values()
        ]
        lines = []
        total = 0
        for _ in range(self._rng.randint(1, 3)):
            item = self._rng.choice(sellable)
            quantity = self._rng.randint(1, 3)
            cents = int(item["price"].replace(".", ""))
            total += cents * quantity
            is_variation = "parent_id" in item and item["parent_id"]
            lines.append(
                {
                    "id": self.new_id(),
                    "name": item["name"],
                    "product_id": item["parent_id"] if is_variation else item["id"],
                    "variation_id": item["id"] if is_variation else 0,
                    "quantity": quantity,
                    "subtotal": f"{cents * quantity / 100:.2f}",
                    "total": f"{cents * quantity / 100:.2f}",
                    "sku": item["sku"],
                    "price": cents / 100,
                }
            )
        status = ["processing", "completed", "on-hold", "pending"][index % 4]
        address = {
            "first_name": "Ada",
            "last_name": f"Buyer{index}",
            "company": "",
            "address_1": f"{index} Market St",
            "address_2": "",
            "city": "San Francisco",
            "state": "CA",
            "postcode": "94103",
            "country": "US",
        }
        self.orders[order_id] = {
            "id": order_id,
            "parent_id": 0,
            "number": str(order_id),
            "order_key": f"wc_order_{order_id:08x}",
            "status": status,
            "currency": self.currency,
            "total": f"{(total + 500) / 100:.2f}",
            "shipping_total": "5.00",
            "total_tax": "0.00",
            "customer_id": 0,
            "billing": {**address, "email": f"buyer{index}@example.com", "phone": "(555) 555-0100"},
            "shipping": address,
            "line_items": lines,
            "date_paid_gmt": None,
            "date_completed_gmt": None,
            **self._stamp(base),
        }
        self.notes[order_id] = []

    # -- changes a merchant makes ---------------------------------------------------------
    def touch(self, record: dict[str, Any]) -> None:
        """Bump a record's modification time to now; the active price follows the regular and
        sale prices, as WooCommerce keeps it."""
        record.update(self._dates(self.now()))
        if record.get("regular_price") or record.get("sale_price"):
            record["price"] = record.get("sale_price") or record.get("regular_price")

    def update_product(self, product_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a product (its modification time moves)."""
        with self.lock:
            product = self.products[product_id]
            product.update(changes)
            self.touch(product)
            snapshot = dict(product)
        self._announce("product", snapshot)
        return product

    def update_variation(self, variation_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Change a variation; saving a variation re-saves its parent too (both move)."""
        with self.lock:
            variation = self.variations[variation_id]
            variation.update(changes)
            self.touch(variation)
            parent = self.products[variation["parent_id"]]
            self.touch(parent)
            snapshot = dict(parent)
        self._announce("product", snapshot)
        return variation

    def update_order(self, order_id: int, changes: dict[str, Any]) -> dict[str, Any]:
        """Change an order."""
        with self.lock:
            order = self.orders[order_id]
            order.update(changes)
            self.touch(order)
            snapshot = dict(order)
        self._announce("order", snapshot)
        return order

    def _announce(self, resource: str, record: dict[str, Any]) -> None:
        for observer in self.observers:
            observer(resource, record)

    def stock_of(self, sku: str) -> int | None:
        """Stock of the product or variation with this SKU."""
        for record in (*self.products.values(), *self.variations.values()):
            if record.get("sku") == sku:
                return record.get("stock_quantity")
        raise KeyError(sku)

    def set_stock(self, sku: str, quantity: int) -> None:
        """Set the stock of the product or variation with this SKU."""
        for variation in self.variations.values():
            if variation["sku"] == sku:
                self.update_variation(variation["id"], {"stock_quantity": quantity})
                return
        for product in self.products.values():
            if product["sku"] == sku:
                self.update_product(product["id"], {"stock_quantity": quantity})
                return
        raise KeyError(sku)

    def skus(self) -> list[str]:
        """Every stock-managed SKU, sorted."""
        return sorted(
            r["sku"]
            for r in (*self.products.values(), *self.variations.values())
            if r.get("manage_stock") and r.get("sku")
        )


WEBHOOK_DISABLE_AFTER = 5
"""WooCommerce disables a webhook after this many failed deliveries in a row."""


def woo_delivery(
    source: str, webhook_id: int, delivery_id: int, topic: str, payload: dict[str, Any], secret: str
) -> Delivery:
    """A delivery as WooCommerce sends it: the resource's JSON, signed with
    ``X-WC-Webhook-Signature`` = base64(HMAC-SHA256(secret, body)), and the source, topic,
    resource, event, webhook id and delivery id headers. WooCommerce stamps no send time."""
    body = orjson.dumps(payload)
    signature = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    resource, _, event = topic.partition(".")
    return Delivery(
        topic,
        body,
        {
            "Content-Type": "application/json",
            "X-WC-Webhook-Source": source,
            "X-WC-Webhook-Topic": topic,
            "X-WC-Webhook-Resource": resource,
            "X-WC-Webhook-Event": event,
            "X-WC-Webhook-Signature": signature.decode(),
            "X-WC-Webhook-ID": str(webhook_id),
            "X-WC-Webhook-Delivery-ID": str(delivery_id),
        },
    )


class WooCommerceSandbox(Sandbox):
    """A WooCommerce store on 127.0.0.1; credentials are one consumer key and secret."""

    platform = "woocommerce"

    def __init__(
        self,
        *,
        consumer_key: str = "ck_sandbox",
        consumer_secret: str = "cs_sandbox",
        throttle_every: int = 0,
        retry_after: float = 1.0,
        shipment_tracking: bool = False,
        port: int = 0,
        log_path: Any = None,
        data: WooCommerceData | None = None,
        **data_options: Any,
    ) -> None:
        super().__init__(port=port, log_path=log_path)
        self.consumer_key = consumer_key
        self.consumer_secret = consumer_secret
        self.issued_keys: dict[str, str] = {}
        """Key pairs created through ``/wc-auth/v1/authorize``."""
        self.throttle_every = throttle_every
        self.retry_after = retry_after
        self.shipment_tracking = shipment_tracking
        self.trackings: dict[int, list[dict[str, Any]]] = {}
        self.data = data or WooCommerceData(**data_options)
        self._nonces: dict[str, float] = {}
        self._served = 0
        self.webhooks_by_id: dict[int, dict[str, Any]] = {}
        """Webhooks created through ``POST /webhooks`` (their secrets kept out of answers)."""
        self._deliveries = 0
        self.webhooks = WebhookSender(
            self._build_delivery,
            lambda resource, record: (f"{resource}.updated", record),
            attempts=1,
            disable_after=WEBHOOK_DISABLE_AFTER,
        )
        self.data.observers.append(self.webhooks.changed)

    def _build_delivery(
        self, topic: str, payload: dict[str, Any], secret: str, sent_at: datetime | None
    ) -> Delivery:
        self._deliveries += 1
        hook = next((h for h in self.webhooks_by_id.values() if h["topic"] == topic), {"id": 0})
        return woo_delivery(
            f"{self.url}/", int(hook["id"]), self._deliveries, topic, payload, secret
        )

    def stop(self) -> None:
        """Stop serving and delivering webhooks."""
        self.webhooks.close()
        super().stop()

    def credentials(self) -> dict[str, str]:
        """The key pair this store accepts."""
        return {"consumer_key": self.consumer_key, "consumer_secret": self.consumer_secret}

    # -- protocol ------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Authenticate, then route ``/wp-json/wc/v3/...``."""
        parts = urlsplit(path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        entry: dict[str, Any] = {
            "t": time.monotonic(),
            "method": method,
            "path": parts.path,
            "query": {k: v for k, v in query.items() if not k.startswith("oauth_")},
        }
        reply = self._serve(method, parts.path, query, headers, body, entry)
        entry["status"] = reply[0] or "dropped"
        self.log.append(entry)
        return reply

    def _serve(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        entry: dict[str, Any],
    ) -> Reply:
        if path == "/wc-auth/v1/authorize" and method == "GET":
            return self._authorize_app(query)
        tracking = path.startswith(TRACKING_PREFIX)
        if not path.startswith(PREFIX) and not (tracking and self.shipment_tracking):
            return _error(404, "rest_no_route", "No route was found matching the URL.")
        refused = self._authenticate(method, path, query, headers)
        if refused is not None:
            return refused
        self._served += 1
        if self.throttle_every and self._served % self.throttle_every == 0:
            entry["throttled"] = True
            reply = _error(429, "too_many_requests", "Too many requests.")
            return reply[0], {**reply[1], "Retry-After": f"{self.retry_after:g}"}, reply[2]
        route = path[len(TRACKING_PREFIX if tracking else PREFIX) :].strip("/").split("/")
        if tracking:
            route = ["tracking", *route]
        try:
            payload = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        with self.data.lock:
            return self._route(method, route, query, payload, entry)

    def _authorize_app(self, query: dict[str, str]) -> Reply:
        """``/wc-auth/v1/authorize``: the store owner approves (here at once); the store creates
        a key pair, POSTs it as JSON to ``callback_url`` (``key_id``, ``user_id``,
        ``consumer_key``, ``consumer_secret``, ``key_permissions``), then sends the browser to
        ``return_url`` with ``success`` and ``user_id``. Real stores want an https callback;
        the sandbox takes loopback http too."""
        needed = ("app_name", "scope", "user_id", "return_url", "callback_url")
        if any(not query.get(name) for name in needed) or query["scope"] not in (
            "read",
            "write",
            "read_write",
        ):
            return _error(400, "woocommerce_rest_invalid_request", "Missing or invalid parameter.")
        callback = urlsplit(query["callback_url"])
        if callback.scheme != "https" and callback.hostname != "127.0.0.1":
            return _error(400, "woocommerce_rest_invalid_request", "callback_url must be https.")
        key = "ck_" + secrets.token_hex(20)
        secret = "cs_" + secrets.token_hex(20)
        posted = {
            "key_id": len(self.issued_keys) + 2,
            "user_id": query["user_id"],
            "consumer_key": key,
            "consumer_secret": secret,
            "key_permissions": query["scope"],
        }
        try:
            answer = httpx.post(query["callback_url"], json=posted, timeout=10)
            delivered = answer.is_success
        except httpx.HTTPError:
            delivered = False
        if delivered:
            self.issued_keys[key] = secret
        separator = "&" if "?" in query["return_url"] else "?"
        back = urlencode({"success": int(delivered), "user_id": query["user_id"]})
        return 302, {"Location": f"{query['return_url']}{separator}{back}"}, b""

    def _authenticate(
        self, method: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> Reply | None:
        if headers.get("authorization", "").lower().startswith("basic"):
            return _error(
                401,
                "woocommerce_rest_cannot_view",
                "Basic authentication is only accepted over HTTPS.",
            )
        secret = self.issued_keys.get(query.get("oauth_consumer_key", ""))
        if query.get("oauth_consumer_key") == self.consumer_key:
            secret = self.consumer_secret
        if secret is None:
            return _error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        method_name = query.get("oauth_signature_method", "")
        digests = {"HMAC-SHA1": hashlib.sha1, "HMAC-SHA256": hashlib.sha256}
        if method_name not in digests:
            return _error(
                401, "woocommerce_rest_authentication_error", "Invalid signature method passed."
            )
        try:
            stamp = int(query.get("oauth_timestamp", ""))
        except ValueError:
            stamp = 0
        if abs(time.time() - stamp) > TIMESTAMP_WINDOW:
            return _error(401, "woocommerce_rest_authentication_error", "Invalid timestamp.")
        params = {k: v for k, v in query.items() if k != "oauth_signature"}
        encoded = sorted((_pct(k), _pct(v)) for k, v in params.items())
        normalized = "&".join(f"{k}={v}" for k, v in encoded)
        base = "&".join([method.upper(), _pct(f"{self.url}{path}"), _pct(normalized)])
        key = f"{secret}&".encode()
        expected = base64.b64encode(
            hmac.new(key, base.encode(), digests[method_name]).digest()
        ).decode()
        if not hmac.compare_digest(expected, query.get("oauth_signature", "")):
            return _error(
                401,
                "woocommerce_rest_authentication_error",
                "Invalid signature - provided signature does not match.",
            )
        nonce = query.get("oauth_nonce", "")
        now = time.time()
        self._nonces = {n: t for n, t in self._nonces.items() if now - t < TIMESTAMP_WINDOW}
        if not nonce or nonce in self._nonces:
            return _error(
                401,
                "woocommerce_rest_authentication_error",
                "Invalid nonce - nonce has already been used.",
            )
        self._nonces[nonce] = now
        return None

    def _route(
        self,
        method: str,
        route: list[str],
        query: dict[str, str],
        payload: Any,
        entry: dict[str, Any],
    ) -> Reply:
        data = self.data
        match method, route:
            case "GET", ["tracking", "orders", order_id, "shipment-trackings"]:
                entry["op"] = "list_trackings"
                if int(order_id) not in data.orders:
                    return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
                return json_reply(200, self.trackings.get(int(order_id), []))
            case "POST", ["tracking", "orders", order_id, "shipment-trackings"]:
                entry.update(op="create_tracking", write=True)
                if int(order_id) not in data.orders:
                    return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
                if not payload.get("tracking_number"):
                    return _error(
                        400, "rest_missing_callback_param", "Missing parameter(s): tracking_number"
                    )
                link = str(payload.get("custom_tracking_link") or "")
                item = {
                    "tracking_id": f"{data.new_id():032x}",
                    "tracking_provider": payload.get("tracking_provider")
                    or payload.get("custom_tracking_provider")
                    or "",
                    "tracking_link": link.replace("%1$s", str(payload["tracking_number"])),
                    "tracking_number": str(payload["tracking_number"]),
                    "date_shipped": payload.get("date_shipped") or data.now().date().isoformat(),
                }
                self.trackings.setdefault(int(order_id), []).append(item)
                if self.faults.take_drop("create_tracking"):
                    return DROP
                return json_reply(201, item)
            case "GET", ["data", "currencies", "current"]:
                entry["op"] = "currency"
                return json_reply(
                    200, {"code": data.currency, "name": data.currency, "symbol": "$"}
                )
            case "GET", ["products"]:
                entry["op"] = "list_products"
                return self._list(list(data.products.values()), query, "products", entry)
            case "GET", ["products", product_id, "variations"]:
                entry["op"] = "list_variations"
                product = data.products.get(int(product_id))
                if product is None:
                    return _error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                rows = [data.variations[v] for v in product["variations"] if v in data.variations]
                return self._list(rows, query, f"products/{product_id}/variations", entry)
            case "GET", ["orders"]:
                entry["op"] = "list_orders"
                return self._list(list(data.orders.values()), query, "orders", entry)
            case "POST", ["products", "batch"]:
                entry.update(op="batch_products", write=True)
                return self._batch(payload, data.products, data.update_product, entry)
            case "POST", ["products", product_id, "variations", "batch"]:
                entry.update(op="batch_variations", write=True)
                if int(product_id) not in data.products:
                    return _error(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
                mine = {v: data.variations[v] for v in data.products[int(product_id)]["variations"]}
                return self._batch(payload, mine, data.update_variation, entry)
            case "PUT", ["orders", order_id]:
                entry.update(op="update_order", write=True)
                if int(order_id) not in data.orders:
                    return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
                allowed = {k: v for k, v in payload.items() if k in ("status", "customer_note")}
                return json_reply(200, data.update_order(int(order_id), allowed))
            case "GET", ["orders", order_id, "notes"]:
                entry["op"] = "list_notes"
                if int(order_id) not in data.orders:
                    return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
                return json_reply(200, list(reversed(data.notes[int(order_id)])))
            case "POST", ["orders", order_id, "notes"]:
                entry.update(op="create_note", write=True)
                if int(order_id) not in data.orders:
                    return _error(404, "woocommerce_rest_shop_order_invalid_id", "Invalid ID.")
                if not payload.get("note"):
                    return _error(400, "rest_missing_callback_param", "Missing parameter(s): note")
                note = {
                    "id": data.new_id(),
                    "author": "WooCommerce",
                    "date_created_gmt": wc_time(data.now()),
                    "note": str(payload["note"]),
                    "customer_note": bool(payload.get("customer_note")),
                }
                data.notes[int(order_id)].append(note)
                data.touch(data.orders[int(order_id)])
                if self.faults.take_drop("create_note"):
                    return DROP
                return json_reply(201, note)
            case "POST", ["webhooks"]:
                entry.update(op="create_webhook", write=True)
                return self._create_webhook(payload)
            case "GET", ["webhooks"]:
                entry["op"] = "list_webhooks"
                return json_reply(200, [self._public(h) for h in self.webhooks_by_id.values()])
            case "DELETE", ["webhooks", webhook_id]:
                entry.update(op="delete_webhook", write=True)
                hook = self.webhooks_by_id.pop(int(webhook_id), None)
                if hook is None:
                    return _error(404, "woocommerce_rest_webhook_invalid_id", "Invalid ID.")
                hook["subscription"].disabled = True
                return json_reply(200, self._public(hook))
        return _error(
            404, "rest_no_route", "No route was found matching the URL and request method."
        )

    def _create_webhook(self, payload: dict[str, Any]) -> Reply:
        """``POST /webhooks``: ``topic`` (``product.updated``, ``order.updated`` …),
        ``delivery_url``, ``secret``; deliveries start at once (status ``active``)."""
        topic, url = str(payload.get("topic", "")), str(payload.get("delivery_url", ""))
        if topic.partition(".")[0] not in ("product", "order") or not url:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): topic, delivery_url")
        hook_id = self.data.new_id()
        secret = str(payload.get("secret") or secrets.token_hex(16))
        self.webhooks.subscribe(url, secret, topics={topic})
        now = wc_time(self.data.now())
        hook = {
            "id": hook_id,
            "name": str(payload.get("name") or f"Webhook {hook_id}"),
            "status": "active",
            "topic": topic,
            "resource": topic.partition(".")[0],
            "event": topic.partition(".")[2],
            "hooks": [],
            "delivery_url": url,
            "date_created_gmt": now,
            "date_modified_gmt": now,
            "subscription": self.webhooks.subscriptions[-1],
        }
        self.webhooks_by_id[hook_id] = hook
        return json_reply(201, self._public(hook))

    @staticmethod
    def _public(hook: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in hook.items() if k != "subscription"}
        if hook["subscription"].disabled:
            shown["status"] = "disabled"
        return shown

    def _list(
        self, rows: list[dict[str, Any]], query: dict[str, str], route: str, entry: dict[str, Any]
    ) -> Reply:
        try:
            per_page = int(query.get("per_page", "10"))
            page = int(query.get("page", "1"))
        except ValueError:
            return _error(400, "rest_invalid_param", "Invalid parameter(s): page, per_page")
        if not 1 <= per_page <= MAX_PER_PAGE:
            return _error(
                400,
                "rest_invalid_param",
                "Invalid parameter(s): per_page (per_page must be between 1 (inclusive) and "
                "100 (inclusive))",
            )
        after = query.get("modified_after")
        if after:
            try:
                moment = datetime.fromisoformat(after.replace("Z", "+00:00"))
            except ValueError:
                return _error(400, "rest_invalid_param", "Invalid parameter(s): modified_after")
            if moment.tzinfo is None:
                gmt = query.get("dates_are_gmt") in ("true", "1")
                moment = moment.replace(tzinfo=UTC) - (timedelta(0) if gmt else SITE_OFFSET)
            floor = wc_time(moment)
            rows = [r for r in rows if r["date_modified_gmt"] > floor]
        orderby = query.get("orderby", "date")
        field = {"modified": "date_modified_gmt", "date": "date_created_gmt", "id": "id"}.get(
            orderby
        )
        if field is None:
            return _error(400, "rest_invalid_param", f"Invalid parameter(s): orderby ({orderby})")
        rows = sorted(rows, key=lambda r: (r[field], r["id"]), reverse=query.get("order") != "asc")
        total = len(rows)
        pages = max(1, -(-total // per_page))
        chosen = rows[(page - 1) * per_page : page * per_page]
        entry["records"] = len(chosen)
        links = [f'<{self.url}{PREFIX}/{route}?page={pages}>; rel="last"']
        if page < pages:
            links.insert(0, f'<{self.url}{PREFIX}/{route}?page={page + 1}>; rel="next"')
        headers = {
            "X-WP-Total": str(total),
            "X-WP-TotalPages": str(pages),
            "Link": ", ".join(links),
        }
        return json_reply(200, chosen, headers)

    def _batch(
        self,
        payload: Any,
        table: dict[int, dict[str, Any]],
        update: Any,
        entry: dict[str, Any],
    ) -> Reply:
        if not isinstance(payload, dict):
            return _error(400, "rest_invalid_json", "Invalid JSON body passed.")
        count = sum(len(payload.get(verb) or []) for verb in ("create", "update", "delete"))
        if count > MAX_BATCH:
            return _error(
                413,
                "woocommerce_rest_request_entity_too_large",
                f"Unable to accept more than {MAX_BATCH} items for this request.",
            )
        entry["items"] = count
        answered = []
        for item in payload.get("update") or []:
            record_id = int(item.get("id") or 0)
            if record_id not in table:
                answered.append(
                    {
                        "id": record_id,
                        "error": {
                            "code": "woocommerce_rest_product_invalid_id",
                            "message": "Invalid ID.",
                            "data": {"status": 400},
                        },
                    }
                )
                continue
            quantity = item.get("stock_quantity")
            if quantity is not None and (not isinstance(quantity, int) or quantity < 0):
                answered.append(
                    {
                        "id": record_id,
                        "error": {
                            "code": "rest_invalid_param",
                            "message": "Invalid parameter(s): stock_quantity",
                            "data": {"status": 400},
                        },
                    }
                )
                continue
            changes = {k: v for k, v in item.items() if k != "id"}
            answered.append(update(record_id, changes))
        if self.faults.take_drop(entry["op"]):
            return DROP
        return json_reply(200, {"update": answered})

    def control(self, action: str, payload: dict[str, Any]) -> Any:
        """``set_stock`` {sku, quantity}; the shared actions otherwise."""
        if action == "set_stock":
            self.data.set_stock(str(payload["sku"]), int(payload["quantity"]))
            return {"ok": True}
        return super().control(action, payload)
