"""A loopback Taobao/Tmall Open Platform (TOP) gateway: ``POST /router/rest``.

Written from TOP's documentation (notes and sources in ``shared/platforms/taobao.md``), never
from the connector or its signing code:

* **Public parameters** ``method, app_key, session, timestamp, v, format, sign_method, sign``;
  the signature is checked for ``md5`` (``MD5(secret+s+secret)``), ``hmac`` (HMAC-MD5) and
  ``hmac-sha256`` over the parameters sorted by name and concatenated as ``name+value``,
  upper-case hex. ``timestamp`` is ``yyyy-MM-dd HH:mm:ss`` in GMT+8 and must be within ten
  minutes of the gateway's clock.
* **Errors come in a 200 body**: ``{"error_response": {"code", "msg", "sub_code", "sub_msg"}}``
  — 7 App Call Limited ("This ban will last for N more seconds", past the app's calls per
  second), 15 a business error, 25 Invalid Signature, 27 Invalid Session, 29 Invalid App Key,
  31 Invalid Timestamp, 40 Missing Required Arguments, 41 Invalid Arguments.
* ``taobao.items.onsale.get`` (``page_size`` ≤ 200, ``start_modified``/``end_modified``,
  ``order_by=modified:asc|desc``), ``taobao.item.seller.get`` (an item with its SKUs),
  ``taobao.trades.sold.increment.get`` (``start_modified``/``end_modified`` required, at most one
  day apart, the last three months only, ``page_size`` ≤ 100, newest first, ``use_has_next``),
  ``taobao.trade.fullinfo.get``, ``taobao.skus.quantity.update`` (≤ 20 SKUs of one item,
  ``skuid_quantities="id:n;id:n"``, ``type=1`` a full update) and
  ``taobao.item.quantity.update``.
* Sellers' OAuth (``/authorize``, ``/token``: :mod:`partnersync.sandbox.taobao_oauth`); a
  session key it issued is accepted until it expires.

Times in requests and answers are GMT+8 wall-clock strings, as TOP speaks them.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import threading
import time
from collections import deque
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from partnersync.sandbox.framework import Reply, Sandbox, json_reply
from partnersync.sandbox.taobao_oauth import TaobaoOAuthServer

GMT8 = timezone(timedelta(hours=8))
FORMAT = "%Y-%m-%d %H:%M:%S"
TIMESTAMP_WINDOW = timedelta(minutes=10)


def gmt8(moment: datetime) -> str:
    """A time as TOP writes it."""
    return moment.astimezone(GMT8).strftime(FORMAT)


def parse_gmt8(text: str) -> datetime:
    """A TOP time string as an aware datetime."""
    return datetime.strptime(text, FORMAT).replace(tzinfo=GMT8)


def _failure(code: int, msg: str, sub_code: str | None = None, sub_msg: str | None = None) -> Reply:
    error: dict[str, Any] = {"code": code, "msg": msg, "request_id": "sandbox"}
    if sub_code:
        error["sub_code"] = sub_code
    if sub_msg:
        error["sub_msg"] = sub_msg
    return json_reply(200, {"error_response": error})


class TaobaoData:
    """A seller's items (with SKUs) and trades."""

    def __init__(self, *, seed: int = 5, items: int = 25, trades: int = 30, days: int = 10) -> None:
        self.lock = threading.RLock()
        self.items: dict[int, dict[str, Any]] = {}
        self.trades: dict[int, dict[str, Any]] = {}
        self._rng = random.Random(seed)
        self._next = 5_000_000
        start = self.now() - timedelta(days=days)
        for index in range(items):
            self._generate_item(index, start)
        for index in range(trades):
            self._generate_trade(index, start)

    def now(self) -> datetime:
        """The gateway's clock, second precision."""
        return datetime.now(UTC).replace(microsecond=0)

    def new_id(self) -> int:
        """A fresh numeric id."""
        self._next += self._rng.randint(1, 97)
        return self._next

    def _past(self, start: datetime) -> str:
        span = int((self.now() - timedelta(hours=1) - start).total_seconds())
        return gmt8(start + timedelta(seconds=self._rng.randint(0, max(span, 0))))

    def _generate_item(self, index: int, start: datetime) -> None:
        num_iid = self.new_id()
        price = f"{self._rng.randint(20, 300)}.00"
        colours = [] if index % 3 == 0 else ["黑色", "白色", "红色"][: self._rng.randint(2, 3)]
        skus = [
            {
                "sku_id": self.new_id(),
                "outer_id": f"TB-{index:04d}-{n}",
                "quantity": self._rng.randint(0, 50),
                "price": price,
                "properties_name": f"1627207:{28000 + n}:颜色分类:{colour}",
            }
            for n, colour in enumerate(colours)
        ]
        self.items[num_iid] = {
            "num_iid": num_iid,
            "title": f"淘宝商品 {index}",
            "outer_id": f"TB-{index:04d}",
            "price": price,
            "num": sum(s["quantity"] for s in skus) if skus else self._rng.randint(0, 50),
            "approve_status": "onsale",
            "modified": self._past(start),
            "skus": skus,
        }

    def _generate_trade(self, index: int, start: datetime) -> None:
        tid = self.new_id() * 1000 + index
        item = self._rng.choice(list(self.items.values()))
        sku = self._rng.choice(item["skus"]) if item["skus"] else None
        quantity = self._rng.randint(1, 3)
        payment = f"{float(item['price']) * quantity:.2f}"
        created = self._past(start)
        status = [
            "WAIT_SELLER_SEND_GOODS",
            "WAIT_BUYER_CONFIRM_GOODS",
            "TRADE_FINISHED",
            "WAIT_BUYER_PAY",
        ][index % 4]
        self.trades[tid] = {
            "tid": tid,
            "status": status,
            "created": created,
            "modified": created,
            "pay_time": None if status == "WAIT_BUYER_PAY" else created,
            "payment": payment,
            "total_fee": payment,
            "post_fee": "0.00",
            "buyer_nick": f"买家{index}",
            "receiver_name": f"收件人{index}",
            "receiver_state": "浙江省",
            "receiver_city": "杭州市",
            "receiver_district": "余杭区",
            "receiver_address": f"文一西路{index}号",
            "receiver_zip": "311100",
            "receiver_mobile": "13800000000",
            "orders": {
                "order": [
                    {
                        "oid": tid * 10 + 1,
                        "num_iid": item["num_iid"],
                        "sku_id": sku["sku_id"] if sku else None,
                        "outer_sku_id": sku["outer_id"] if sku else None,
                        "outer_iid": item["outer_id"],
                        "title": item["title"],
                        "num": quantity,
                        "price": item["price"],
                        "payment": payment,
                        "status": status,
                    }
                ]
            },
        }

    def touch_trade(self, tid: int, changes: dict[str, Any]) -> None:
        """A buyer or the seller changes a trade (its ``modified`` moves to now)."""
        with self.lock:
            self.trades[tid].update(changes, modified=gmt8(self.now()))

    def touch_item(self, num_iid: int, changes: dict[str, Any]) -> None:
        """The seller edits an item."""
        with self.lock:
            self.items[num_iid].update(changes, modified=gmt8(self.now()))

    def sku_quantity(self, outer_id: str) -> int:
        """Stock of the SKU (or SKU-less item) with this outer id."""
        for item in self.items.values():
            if not item["skus"] and item["outer_id"] == outer_id:
                return int(item["num"])
            for sku in item["skus"]:
                if sku["outer_id"] == outer_id:
                    return int(sku["quantity"])
        raise KeyError(outer_id)

    def outer_ids(self) -> list[str]:
        """Every stock-keeping outer id, sorted."""
        found = []
        for item in self.items.values():
            found += [s["outer_id"] for s in item["skus"]] or [item["outer_id"]]
        return sorted(found)


class TaobaoSandbox(Sandbox):
    """The TOP gateway for one app and one seller session."""

    platform = "taobao"

    def __init__(
        self,
        *,
        app_key: str = "12345678",
        app_secret: str = "sandbox-secret",
        session: str = "sandbox-session",
        qps: float | None = None,
        port: int = 0,
        log_path: Any = None,
        data: TaobaoData | None = None,
        **data_options: Any,
    ) -> None:
        super().__init__(port=port, log_path=log_path)
        self.app_key = app_key
        self.app_secret = app_secret
        self.session = session
        self.qps = qps
        self.data = data or TaobaoData(**data_options)
        self._calls: deque[float] = deque()
        self._banned_until = 0.0
        self.oauth = TaobaoOAuthServer(app_key=app_key, app_secret=app_secret)

    def credentials(self) -> dict[str, str]:
        """What an account needs."""
        return {"app_key": self.app_key, "app_secret": self.app_secret, "session": self.session}

    # -- protocol ------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """One gateway call."""
        parts = urlsplit(path)
        authorised = self.oauth.handle(method, parts.path, parts.query, body)
        if authorised is not None:
            self.log.append({"t": time.monotonic(), "path": parts.path, "status": authorised[0]})
            return authorised
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        if method == "POST":
            params.update(parse_qsl(body.decode(), keep_blank_values=True))
        entry: dict[str, Any] = {
            "t": time.monotonic(),
            "path": parts.path,
            "op": params.get("method"),
            "params": {
                k: v
                for k, v in params.items()
                if k not in ("sign", "session", "app_key", "timestamp", "v", "format")
            },
        }
        if parts.path != "/router/rest":
            reply = json_reply(404, {"error": "not found"})
        else:
            reply = self._call(params, entry)
        entry["status"] = reply[0]
        self.log.append(entry)
        return reply

    def _call(self, params: dict[str, str], entry: dict[str, Any]) -> Reply:
        refused = self._check(params)
        if refused is not None:
            entry["error"] = refused[2].decode()[:200]
            return refused
        limited = self._throttle()
        if limited is not None:
            entry["error"] = "7"
            return limited
        handler = getattr(self, "_" + params["method"].replace(".", "_"), None)
        if handler is None:
            return _failure(22, "Invalid Method")
        with self.data.lock:
            reply: Reply = handler(params, entry)
        return reply

    def _check(self, params: dict[str, str]) -> Reply | None:
        if not params.get("method"):
            return _failure(21, "Missing Method")
        if params.get("app_key") != self.app_key:
            return _failure(29, "Invalid App Key")
        if not params.get("sign"):
            return _failure(24, "Missing Signature")
        text = "".join(f"{k}{v}" for k, v in sorted(params.items()) if k != "sign")
        secret = self.app_secret.encode()
        method = params.get("sign_method", "md5")
        if method == "md5":
            expected = hashlib.md5(secret + text.encode() + secret).hexdigest()
        elif method == "hmac":
            expected = hmac.new(secret, text.encode(), hashlib.md5).hexdigest()
        elif method == "hmac-sha256":
            expected = hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()
        else:
            return _failure(25, "Invalid Signature", "isv.invalid-sign-method")
        if not hmac.compare_digest(expected.upper(), params["sign"]):
            return _failure(25, "Invalid Signature")
        try:
            stamp = parse_gmt8(params.get("timestamp", ""))
        except ValueError:
            return _failure(31, "Invalid Timestamp")
        if abs(stamp - self.data.now()) > TIMESTAMP_WINDOW:
            return _failure(31, "Invalid Timestamp", "isv.invalid-timestamp")
        session = params.get("session")
        if session != self.session and not self.oauth.accepts(session):
            return _failure(27, "Invalid session", "session-expired")
        return None

    def _throttle(self) -> Reply | None:
        if self.qps is None:
            return None
        now = time.monotonic()
        if now < self._banned_until:
            left = max(1, round(self._banned_until - now))
        else:
            while self._calls and now - self._calls[0] >= 1.0:
                self._calls.popleft()
            if len(self._calls) < self.qps:
                self._calls.append(now)
                return None
            self._banned_until = now + 1.0
            left = 1
        return _failure(
            7,
            "App Call Limited",
            "accesscontrol.limited-by-app-access-count",
            f"This ban will last for {left} more seconds",
        )

    @staticmethod
    def _page(params: dict[str, str], maximum: int, default: int) -> tuple[int, int, Reply | None]:
        try:
            size = int(params.get("page_size", default))
            number = int(params.get("page_no", 1))
        except ValueError:
            return 0, 0, _failure(41, "Invalid Arguments", "isv.invalid-parameter:page_size")
        if not 1 <= size <= maximum or number < 1:
            return (
                0,
                0,
                _failure(
                    41,
                    "Invalid Arguments",
                    "isv.invalid-parameter:page_size",
                    f"page_size must be between 1 and {maximum}",
                ),
            )
        return number, size, None

    def _taobao_items_onsale_get(self, params: dict[str, str], entry: dict[str, Any]) -> Reply:
        number, size, refused = self._page(params, 200, 40)
        if refused is not None:
            return refused
        rows = [i for i in self.data.items.values() if i["approve_status"] == "onsale"]
        for bound in ("start_modified", "end_modified"):
            if not params.get(bound):
                continue
            try:
                limit = parse_gmt8(params[bound])
            except ValueError:
                return _failure(41, "Invalid Arguments", f"isv.invalid-parameter:{bound}")
            if bound == "start_modified":
                rows = [r for r in rows if parse_gmt8(r["modified"]) >= limit]
            else:
                rows = [r for r in rows if parse_gmt8(r["modified"]) <= limit]
        descending = params.get("order_by", "modified:desc").endswith("desc")
        rows.sort(key=lambda r: (r["modified"], r["num_iid"]), reverse=descending)
        chosen = rows[(number - 1) * size : number * size]
        entry["records"] = len(chosen)
        fields = set((params.get("fields") or "num_iid,modified").split(","))
        shown = [{k: v for k, v in r.items() if k in fields} for r in chosen]
        body = {"items": {"item": shown}, "total_results": len(rows)}
        return json_reply(200, {"items_onsale_get_response": body})

    def _taobao_item_seller_get(self, params: dict[str, str], entry: dict[str, Any]) -> Reply:
        try:
            item = self.data.items[int(params["num_iid"])]
        except (KeyError, ValueError):
            return _failure(15, "Remote service error", "isv.item-not-exist", "商品不存在")
        shown = {k: v for k, v in item.items() if k != "skus"}
        shown["skus"] = {"sku": [dict(s) for s in item["skus"]]}
        return json_reply(200, {"item_seller_get_response": {"item": shown}})

    def _taobao_trades_sold_increment_get(
        self, params: dict[str, str], entry: dict[str, Any]
    ) -> Reply:
        number, size, refused = self._page(params, 100, 40)
        if refused is not None:
            return refused
        try:
            start = parse_gmt8(params["start_modified"])
            end = parse_gmt8(params["end_modified"])
        except KeyError:
            return _failure(
                40, "Missing Required Arguments", "isv.missing-parameter:start_modified"
            )
        except ValueError:
            return _failure(41, "Invalid Arguments", "isv.invalid-parameter:start_modified")
        if end - start > timedelta(days=1) or end < start:
            return _failure(
                15,
                "Remote service error",
                "isv.invalid-parameter",
                "start_modified and end_modified must be at most one day apart",
            )
        if start < self.data.now() - timedelta(days=90):
            return _failure(
                15,
                "Remote service error",
                "isv.invalid-parameter",
                "only the last three months can be queried",
            )
        rows = [t for t in self.data.trades.values() if start <= parse_gmt8(t["modified"]) <= end]
        rows.sort(key=lambda t: (t["modified"], t["tid"]), reverse=True)  # newest first
        chosen = rows[(number - 1) * size : number * size]
        entry["records"] = len(chosen)
        body: dict[str, Any] = {
            "trades": {
                "trade": [
                    {"tid": t["tid"], "modified": t["modified"], "status": t["status"]}
                    for t in chosen
                ]
            },
            "total_results": len(rows),
        }
        if params.get("use_has_next") == "true":
            body["has_next"] = number * size < len(rows)
        return json_reply(200, {"trades_sold_increment_get_response": body})

    def _taobao_trade_fullinfo_get(self, params: dict[str, str], entry: dict[str, Any]) -> Reply:
        try:
            trade = self.data.trades[int(params["tid"])]
        except (KeyError, ValueError):
            return _failure(15, "Remote service error", "isv.trade-not-exist", "交易不存在")
        return json_reply(200, {"trade_fullinfo_get_response": {"trade": trade}})

    def _taobao_skus_quantity_update(self, params: dict[str, str], entry: dict[str, Any]) -> Reply:
        entry["write"] = True
        try:
            item = self.data.items[int(params["num_iid"])]
            pairs = [p.split(":") for p in params["skuid_quantities"].split(";") if p]
            wanted = {int(sku): int(quantity) for sku, quantity in pairs}
        except (KeyError, ValueError):
            return _failure(41, "Invalid Arguments", "isv.invalid-parameter:skuid_quantities")
        entry["items"] = len(wanted)
        if len(wanted) > 20:
            return _failure(
                15, "Remote service error", "isv.invalid-parameter", "at most 20 SKUs per call"
            )
        if params.get("type", "1") != "1" or any(q < 0 for q in wanted.values()):
            return _failure(41, "Invalid Arguments", "isv.invalid-parameter:quantity")
        skus = {s["sku_id"]: s for s in item["skus"]}
        missing = sorted(set(wanted) - set(skus))
        if missing:
            return _failure(
                15,
                "Remote service error",
                "isv.sku-not-exist",
                f"SKU {missing[0]} does not belong to item {item['num_iid']}",
            )
        for sku_id, quantity in wanted.items():
            skus[sku_id]["quantity"] = quantity
        self.data.touch_item(item["num_iid"], {"num": sum(s["quantity"] for s in item["skus"])})
        return json_reply(
            200,
            {
                "skus_quantity_update_response": {
                    "item": {"num_iid": item["num_iid"], "modified": item["modified"]}
                }
            },
        )

    def _taobao_item_quantity_update(self, params: dict[str, str], entry: dict[str, Any]) -> Reply:
        entry["write"] = True
        try:
            item = self.data.items[int(params["num_iid"])]
            quantity = int(params["quantity"])
        except (KeyError, ValueError):
            return _failure(41, "Invalid Arguments", "isv.invalid-parameter:quantity")
        if item["skus"] and not params.get("sku_id"):
            return _failure(
                15, "Remote service error", "isv.invalid-parameter", "the item has SKUs: name one"
            )
        if quantity < 0:
            return _failure(41, "Invalid Arguments", "isv.invalid-parameter:quantity")
        self.data.touch_item(item["num_iid"], {"num": quantity})
        return json_reply(
            200,
            {
                "item_quantity_update_response": {
                    "item": {
                        "num_iid": item["num_iid"],
                        "num": quantity,
                        "modified": item["modified"],
                    }
                }
            },
        )
