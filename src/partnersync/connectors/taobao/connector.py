"""Taobao/Tmall Open Platform (TOP) connector: items, stock and trades of one seller.

Facts from TOP's documentation (summarised with sources in ``shared/platforms/taobao.md``):

* Every call is a signed form POST to ``/router/rest`` (:class:`~partnersync.auth.top.TopSignAuth`
  adds ``app_key``, ``session``, ``timestamp`` in GMT+8, ``sign_method`` and ``sign``).
  Errors come in a 200 body as ``error_response``: code 7 ("App Call Limited — This ban will
  last for N more seconds") waits N+1 seconds and tries again; 25/26/27/29 are authentication
  errors (27: the session key expired); 31 is a clock more than ten minutes off; ``isp.*``
  sub-codes are the platform's own failures (retried); the rest are refused requests.
* Times are GMT+8 wall-clock strings at the edge, aware UTC inside.
* **Items** (``taobao.items.onsale.get``, 200 per page, by ``modified``, keyset-walked from the
  newest time seen as ``start_modified`` is inclusive) with their SKUs
  (``taobao.item.seller.get``); **stock** is each SKU (or a SKU-less item) at one location,
  ``default``, keyed by its ``outer_id``.
* **Trades** (``taobao.trades.sold.increment.get``) are walked **window by window** — at most
  one day each, the last one ending a few minutes behind now (late writes land there), never
  further back than three months — and within a window from the **last page backwards**, as the
  platform advises (it lists newest first; new changes then shift pages already read, not ones
  still to read). Pages thus arrive oldest first, so each page is a checkpoint. Details come
  from ``taobao.trade.fullinfo.get``.
* **Stock writes**: ``taobao.skus.quantity.update`` (≤ 20 SKUs of one item, ``type=1``: full
  quantities) or ``taobao.item.quantity.update`` for an item without SKUs. An absolute set is
  safe to repeat; a refused call refuses only its own item's SKUs.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import httpx

from partnersync.auth.top import top_timestamp
from partnersync.connectors.base import (
    AccountInfo,
    Capabilities,
    Connector,
    EntityCapability,
    InventoryWrite,
    InventoryWriteOutcome,
    Page,
    Writer,
)
from partnersync.connectors.http.pagination import ModifiedKeyset
from partnersync.connectors.taobao.mappers import LOCATION, stock_handle, top_time
from partnersync.errors import (
    AuthenticationError,
    BadRequestError,
    BadResponseError,
    ConnectorError,
    PlatformUnavailableError,
    RateLimitedError,
)

GATEWAY = "/router/rest"
ITEM_FIELDS = "num_iid,title,outer_id,price,num,approve_status,modified"
ITEM_DETAIL_FIELDS = f"{ITEM_FIELDS},skus"
TRADE_FIELDS = (
    "tid,status,created,modified,pay_time,payment,total_fee,post_fee,buyer_nick,receiver_name,"
    "receiver_state,receiver_city,receiver_district,receiver_address,receiver_zip,"
    "receiver_mobile,orders"
)
MAX_ITEM_PAGE = 200
MAX_TRADE_PAGE = 100
MAX_SKUS_PER_CALL = 20
WINDOW = timedelta(days=1)
HISTORY = timedelta(days=89)  # the platform serves three months; a margin for clocks
BAN = re.compile(r"last for (\d+) more seconds")
AUTH_CODES = {25, 26, 27, 28, 29}


def top_error(body: Any) -> ConnectorError | None:
    """The typed error an ``error_response`` body stands for, if it is one."""
    error = body.get("error_response") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None
    code = int(error.get("code") or 0)
    sub_code = str(error.get("sub_code") or "")
    text = " ".join(
        str(p) for p in (f"TOP error {code}", error.get("msg"), sub_code, error.get("sub_msg")) if p
    )
    if code == 7:
        match = BAN.search(f"{error.get('sub_msg')} {error.get('msg')}")
        wait = float(match.group(1)) + 1 if match else None
        return RateLimitedError(text, status_code=200, retry_after=wait)
    if code in AUTH_CODES:
        return AuthenticationError(text, status_code=200)
    if code == 31:
        return BadRequestError(
            f"{text} (the gateway refused the timestamp: this machine's clock is more than ten "
            "minutes off)",
            status_code=200,
        )
    if sub_code.startswith("isp."):
        return PlatformUnavailableError(text, status_code=200)
    return BadRequestError(text, status_code=200)


def _check(response: httpx.Response, body: Any) -> None:
    error = top_error(body)
    if error is not None:
        raise error


class TaobaoConnector(Connector):
    """Items, SKU stock and trades of one Taobao/Tmall seller."""

    platform = "taobao"
    capabilities = Capabilities.of(
        EntityCapability("products", sorted_by_cursor=True, page_limit=MAX_ITEM_PAGE),
        EntityCapability(
            "inventory",
            sorted_by_cursor=False,  # levels come with their items
            page_limit=MAX_ITEM_PAGE,
            writer=Writer(frozenset({"update"}), batch_limit=MAX_SKUS_PER_CALL),
        ),
        EntityCapability("orders", sorted_by_cursor=True, page_limit=MAX_TRADE_PAGE, window=WINDOW),
    )

    def __init__(self, account: AccountInfo, **kwargs: Any) -> None:
        super().__init__(account, **kwargs)
        options = account.options
        self.item_page = min(int(options.get("page_size", MAX_ITEM_PAGE)), MAX_ITEM_PAGE)
        self.trade_page = min(int(options.get("page_size", MAX_TRADE_PAGE)), MAX_TRADE_PAGE)
        self.window_lag = timedelta(seconds=float(options.get("window_lag_seconds", 180)))
        qps = float(options.get("qps", 20))
        self.http = self.http_client(
            account.base_url.rstrip("/"),
            limiter=self.rate_budget(getattr(self.auth, "app_key", account.name), qps, qps),
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self.http.aclose()

    @property
    def requests_sent(self) -> int:
        """Gateway calls sent, retries included."""
        return self.http.requests_sent

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        """One signed gateway call; its ``<method>_response`` object."""
        form = {"method": method, **{k: str(v) for k, v in params.items() if v is not None}}
        _, body = await self.http.request_json(
            "POST", GATEWAY, form=form, check=_check, idempotent=True
        )
        key = method.removeprefix("taobao.").replace(".", "_") + "_response"
        answer = body.get(key) if isinstance(body, dict) else None
        if not isinstance(answer, dict):
            raise BadResponseError(f"{method} answered without {key}")
        return answer

    def mapping_settings(self) -> dict[str, Any]:
        """Taobao sells in renminbi."""
        return {"currency": "CNY"}

    async def check(self) -> str:
        """One authenticated call."""
        await self.call("taobao.items.onsale.get", fields="num_iid", page_no=1, page_size=1)
        return f"Taobao seller session at {self.account.base_url}"

    def record_handle(self, entity: str, record: Mapping[str, Any]) -> str | None:
        """Stock is written by ``num_iid:sku_id`` (or ``num_iid`` for an item without SKUs)."""
        return stock_handle(record) if entity == "inventory" else None

    def record_updated_at(self, entity: str, record: Mapping[str, Any]) -> datetime | None:
        """``modified`` (GMT+8) as UTC."""
        try:
            return top_time(record.get("modified"))
        except ValueError:
            return None

    # -- reads ---------------------------------------------------------------------------
    async def stream(self, entity: str, *, since: datetime | None = None) -> AsyncIterator[Page]:
        """Pages of items (with SKUs), SKU stock levels, or trades in detail."""
        before = self.requests_sent
        number = 0
        source = self._trades(since) if entity == "orders" else self._items(since)
        async for records in source:
            if entity == "inventory":
                records = [level for item in records for level in _levels(item)]
            number += 1
            spent, before = self.requests_sent - before, self.requests_sent
            yield Page(records=records, number=number, requests=spent)

    async def _items(self, since: datetime | None) -> AsyncIterator[list[dict[str, Any]]]:
        walk = ModifiedKeyset(since)  # start_modified is inclusive: ties come back, dropped
        while True:
            answer = await self.call(
                "taobao.items.onsale.get",
                fields=ITEM_FIELDS,
                page_no=walk.page,
                page_size=self.item_page,
                order_by="modified:asc",
                start_modified=top_timestamp(walk.after) if walk.after else None,
            )
            listed = (answer.get("items") or {}).get("item") or []
            fresh, more = walk.take(
                listed,
                lambda i: (i.get("num_iid"), i.get("modified")),
                lambda i: top_time(i.get("modified")),
                self.item_page,
            )
            if fresh:
                yield [await self._item(i["num_iid"]) for i in fresh]
            if not more:
                return

    async def _item(self, num_iid: Any) -> dict[str, Any]:
        answer = await self.call(
            "taobao.item.seller.get", num_iid=num_iid, fields=ITEM_DETAIL_FIELDS
        )
        item = answer.get("item")
        if not isinstance(item, dict):
            raise BadResponseError(f"item {num_iid} came back empty")
        return item

    async def _trades(self, since: datetime | None) -> AsyncIterator[list[dict[str, Any]]]:
        now = self.clock.now()
        horizon = now - HISTORY
        start = max(since, horizon) if since else horizon
        last_end = now - self.window_lag
        while start < last_end:
            end = min(start + WINDOW, last_end)
            async for trades in self._window(start, end):
                yield trades
            start = end

    async def _window(self, start: datetime, end: datetime) -> AsyncIterator[list[dict[str, Any]]]:
        """One window's trades, oldest page first (the platform lists newest first)."""
        window = {
            "start_modified": top_timestamp(start),
            "end_modified": top_timestamp(end),
            "fields": "tid,modified",
            "page_size": self.trade_page,
        }
        first = await self.call("taobao.trades.sold.increment.get", page_no=1, **window)
        total = int(first.get("total_results") or 0)
        pages = math.ceil(total / self.trade_page)
        for page in range(pages, 0, -1):
            answer = (
                first
                if page == 1
                else await self.call("taobao.trades.sold.increment.get", page_no=page, **window)
            )
            listed = (answer.get("trades") or {}).get("trade") or []
            if listed:
                yield [await self._trade(t["tid"]) for t in reversed(listed)]

    async def _trade(self, tid: Any) -> dict[str, Any]:
        answer = await self.call("taobao.trade.fullinfo.get", tid=tid, fields=TRADE_FIELDS)
        trade = answer.get("trade")
        if not isinstance(trade, dict):
            raise BadResponseError(f"trade {tid} came back empty")
        return trade

    # -- writes --------------------------------------------------------------------------
    async def set_inventory(
        self, writes: Sequence[InventoryWrite], idempotency_key: str
    ) -> InventoryWriteOutcome:
        """Full quantities, one call per item (≤ 20 SKUs each)."""
        by_item: dict[str, list[tuple[int, str, int]]] = {}
        for index, write in enumerate(writes):
            if write.location_id != LOCATION:
                raise BadRequestError(f"Taobao keeps one stock per SKU, not {write.location_id!r}")
            num_iid, _, sku_id = write.handle.partition(":")
            by_item.setdefault(num_iid, []).append((index, sku_id, write.quantity))
        rejected: dict[int, str] = {}
        for num_iid, entries in by_item.items():
            for start in range(0, len(entries), MAX_SKUS_PER_CALL):
                chunk = entries[start : start + MAX_SKUS_PER_CALL]
                try:
                    await self._set_item(num_iid, chunk)
                except BadRequestError as exc:  # refused for this item: its SKUs only
                    rejected.update({index: str(exc) for index, _, _ in chunk})
        return InventoryWriteOutcome(applied=not rejected, rejected=rejected)

    async def _set_item(self, num_iid: str, chunk: list[tuple[int, str, int]]) -> None:
        skus = [(sku, quantity) for _, sku, quantity in chunk if sku]
        if skus:
            pairs = ";".join(f"{sku}:{quantity}" for sku, quantity in skus)
            await self.call(
                "taobao.skus.quantity.update", num_iid=num_iid, skuid_quantities=pairs, type=1
            )
        for _, sku, quantity in chunk:
            if not sku:
                await self.call(
                    "taobao.item.quantity.update", num_iid=num_iid, quantity=quantity, type=1
                )


def _levels(item: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Stock records of an item: one per SKU, or the item itself without SKUs."""
    skus = (item.get("skus") or {}).get("sku") or []
    common = {"num_iid": item.get("num_iid"), "modified": item.get("modified")}
    if not skus:
        return [{**common, "outer_id": item.get("outer_id"), "quantity": item.get("num")}]
    return [
        {
            **common,
            "sku_id": s.get("sku_id"),
            "outer_id": s.get("outer_id"),
            "quantity": s.get("quantity"),
        }
        for s in skus
    ]


__all__ = ["TaobaoConnector", "top_error"]
