"""The file connector: the brand's own system as CSV/JSONL files in a directory.

Layout of an account's directory (``--url /path/to/drop``)::

    inventory/*.csv|*.jsonl      sku, location, available[, updated_at][, version]
    products/*.csv|*.jsonl       handle, title, sku, price[, currency, compare_at_price,
                                 barcode, vendor, product_type, status, option_name,
                                 option_value, updated_at] — one row per variant
    fulfillments/*.csv|*.jsonl   order, carrier, tracking_number[, tracking_url, channel,
                                 sku, quantity, updated_at] — rows with one order and
                                 tracking number are one parcel; ``sku``/``quantity`` say
                                 what it carries (one row per line)
    orders-out/                  orders exported for the ERP/WMS (written by pushes)

**Pull.** Files are read oldest first (modification time, then name: a stable order). An
incremental pull reads every file that *arrived or changed* since ``since``: a file counts by
the later of its modification time and its status-change time (``ctime``, which a move or copy
into the folder sets to now even when the modification time is kept, and which no tool can set
back). A file is read whole — rows are never filtered by their own ``updated_at`` (an ERP's
event time may lag its export), and a product file gives each product with all its rows; rows
that did not change are skipped by their content hash. Each file is one page (large files in
chunks). Drop files atomically (write elsewhere, then rename into the folder). Within one
file, a second row for the same SKU (and location) is marked as a duplicate and dead-lettered.

**Push (orders).** :meth:`FileConnector.write_orders` writes one file per batch, atomically
(temporary file, fsync, rename), named after the batch's idempotency key so a re-run can see
that a batch was already written before writing it again.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import orjson

from partnersync.connectors.base import (
    AccountInfo,
    Capabilities,
    Connector,
    EntityCapability,
    Page,
    Writer,
)
from partnersync.connectors.file.reading import (
    UnreadableFileError,
    csv_rows,
    decode,
    jsonl_rows,
)
from partnersync.errors import ConfigError
from partnersync.mapping.convert import to_utc

ENTITY_DIRS = {"inventory": "inventory", "products": "products", "fulfillments": "fulfillments"}
EXPORT_DIR = "orders-out"
QUARANTINE_DIR = "quarantine"
DEFAULT_MAX_STOCK = 1_000_000
"""Stock above this (per SKU and location) is taken for a broken export: a dead letter."""
CHUNK_ROWS = 1000


def directory_of(account: AccountInfo) -> Path:
    """The account's directory (``file://`` prefix allowed)."""
    return Path(account.base_url.removeprefix("file://")).expanduser()


class FileConnector(Connector):
    """Reads stock, products and shipments from a drop directory; writes order exports."""

    platform = "file"
    capabilities = Capabilities.of(
        EntityCapability("inventory", sorted_by_cursor=False),
        EntityCapability("products", sorted_by_cursor=False),
        EntityCapability("fulfillments", sorted_by_cursor=False),
        EntityCapability(
            "orders",
            pull=False,
            incremental=False,
            # One export file per batch, named by the batch key (found again after a crash).
            writer=Writer(frozenset({"create"}), batch_limit=100_000, verified_by="batch key"),
        ),
    )

    def __init__(self, account: AccountInfo, **kwargs: Any) -> None:
        super().__init__(account, **kwargs)
        self.root = directory_of(account)
        self.export_format = str(account.options.get("export_format", "jsonl"))
        if self.export_format not in ("jsonl", "csv"):
            raise ConfigError(f"{account.name}: export_format must be jsonl or csv")
        self.files_read = 0
        self.encoding = (
            str(account.options["encoding"]) if account.options.get("encoding") else None
        )
        self.max_stock = int(account.options.get("max_stock", DEFAULT_MAX_STOCK))

    @property
    def requests_sent(self) -> int:
        """Files read (the file connector's unit of work)."""
        return self.files_read

    async def check(self) -> str:
        """The directory exists and is readable."""
        if not self.root.is_dir():
            raise ConfigError(f"{self.account.name}: {self.root} is not a directory")
        return f"directory {self.root}"

    def mapping_settings(self) -> dict[str, Any]:
        """The bound above which a stock count is refused (account option ``max_stock``)."""
        return {"max_stock": self.max_stock}

    def record_source(self, entity: str, record: Mapping[str, Any]) -> str | None:
        """``file:line`` of the row (first row of a product)."""
        if "_file" not in record:
            return None
        return f"{record['_file']}:{record.get('_line', '?')}"

    def record_updated_at(self, entity: str, record: Mapping[str, Any]) -> datetime | None:
        """The row's ``updated_at``, else its file's modification time."""
        for value in (record.get("updated_at"), record.get("_mtime")):
            if value:
                try:
                    return to_utc(value)
                except ValueError:
                    continue
        return None

    def files(self, entity: str, since: datetime | None) -> list[Path]:
        """Data files of ``entity`` modified at or after ``since``, oldest first."""
        folder = self.root / ENTITY_DIRS[entity]
        if not folder.is_dir():
            return []
        found = [p for p in folder.iterdir() if p.is_file() and p.suffix in (".csv", ".jsonl")]
        stats = [(p.stat(), p) for p in found]
        floor = since.timestamp() if since else None
        return [
            p
            for stat, p in sorted(stats, key=lambda pair: (pair[0].st_mtime, pair[1].name))
            if floor is None or max(stat.st_mtime, stat.st_ctime) >= floor
        ]

    async def stream(self, entity: str, *, since: datetime | None = None) -> AsyncIterator[Page]:
        """Pages of rows (products: one record per handle, shipments one per parcel)."""
        number = 0
        for path in self.files(entity, since):
            records = await anyio.to_thread.run_sync(self._read_file, entity, path)
            self.files_read += 1
            for start in range(0, max(len(records), 1), CHUNK_ROWS):
                number += 1
                chunk = records[start : start + CHUNK_ROWS]
                yield Page(records=chunk, number=number, requests=1 if start == 0 else 0)

    def _read_file(self, entity: str, path: Path) -> list[dict[str, Any]]:
        mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).isoformat()
        relative = str(path.relative_to(self.root))
        try:
            text, _ = decode(path.read_bytes(), self.encoding)
        except UnreadableFileError as exc:
            # Moved aside so it is reported once and blocks nothing; every other file goes on.
            moved = self._quarantine(path)
            reason = f"{relative}: {exc}; moved to {moved.relative_to(self.root)}"
            return [{"_file": relative, "_line": 1, "_mtime": mtime, "_unreadable": reason}]
        rows = []
        parsed = jsonl_rows(text, entity) if path.suffix == ".jsonl" else csv_rows(text, entity)
        for line, row in parsed:
            row.update(_file=relative, _line=line, _mtime=mtime)
            rows.append(row)
        if entity == "products":
            return _group(rows, ("handle",), ("sku", "sku"))
        if entity == "fulfillments":
            return _group(rows, ("order", "tracking_number"), ("sku", "sku"))
        _mark_duplicates(rows, ("sku", "location"))
        return rows

    @staticmethod
    def _quarantine(path: Path) -> Path:
        """Move an unreadable file into ``quarantine/`` beside it (never overwriting one)."""
        folder = path.parent / QUARANTINE_DIR
        folder.mkdir(exist_ok=True)
        target = folder / path.name
        number = 1
        while target.exists():
            number += 1
            target = folder / f"{path.stem}.{number}{path.suffix}"
        os.replace(path, target)
        return target

    # -- push: order exports -------------------------------------------------------------
    def export_name(self, batch_key: str) -> str:
        """The file a batch is written to (its key makes it findable after a crash)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"orders-{stamp}-{batch_key[:16]}.{self.export_format}"

    def find_export(self, batch_key: str) -> str | None:
        """The already-written file of a batch, if any."""
        folder = self.root / EXPORT_DIR
        if not folder.is_dir():
            return None
        matches = sorted(folder.glob(f"orders-*-{batch_key[:16]}.*"))
        return str(matches[0]) if matches else None

    async def write_orders(self, batch_key: str, orders: Sequence[Mapping[str, Any]]) -> str:
        """Write one export file atomically; returns its path."""
        path = await anyio.to_thread.run_sync(self._write_orders, batch_key, orders)
        return str(path)

    def _write_orders(self, batch_key: str, orders: Sequence[Mapping[str, Any]]) -> Path:
        folder = self.root / EXPORT_DIR
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / self.export_name(batch_key)
        payload = _jsonl(orders) if self.export_format == "jsonl" else _csv(orders)
        descriptor, temporary = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return target


def _mark_duplicates(rows: list[dict[str, Any]], key_fields: tuple[str, str]) -> None:
    first_line: dict[tuple[Any, ...], int] = {}
    for row in rows:
        key = tuple(row.get(f) for f in key_fields)
        if key[0] in (None, ""):
            continue
        if key in first_line:
            row["_duplicate_of"] = first_line[key]
        else:
            first_line[key] = row["_line"]


def _group(
    rows: list[dict[str, Any]], by: tuple[str, ...], unique: tuple[str, str]
) -> list[dict[str, Any]]:
    """One record per value of ``by`` (a product per handle, a parcel per order and tracking
    number), its rows under ``rows``; the first row's columns stand for the record and rows
    repeating ``unique`` within it are marked as duplicates."""
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        key = tuple(row.get(column) for column in by)
        if any(value in (None, "") for value in key):
            key = (f"<line {row['_line']}>",)  # the mapper says what is missing
        group = groups.setdefault(key, {**row, "rows": []})
        group.pop("updated_at", None)
        group["rows"].append(row)
    for group in groups.values():
        stamps = [str(r["updated_at"]) for r in group["rows"] if r.get("updated_at")]
        if stamps:
            group["updated_at"] = max(stamps)
        _mark_duplicates(group["rows"], unique)
    return list(groups.values())


def _jsonl(orders: Sequence[Mapping[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(order, default=str) + b"\n" for order in orders)


def _csv(orders: Sequence[Mapping[str, Any]]) -> bytes:
    """One row per line item, with the order's channel, ids and totals repeated."""
    columns = [
        "channel",
        "order_external_id",
        "order_number",
        "created_at",
        "currency",
        "total",
        "financial_status",
        "fulfillment_status",
        "email",
        "line_external_id",
        "sku",
        "title",
        "quantity",
        "unit_price",
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for order in orders:
        base = {
            "channel": order["channel"],
            "order_external_id": order["external_id"],
            "order_number": order["number"],
            "created_at": order["created_at"],
            "currency": order["currency"],
            "total": order["total"]["amount"],
            "financial_status": order["financial_status"],
            "fulfillment_status": order["fulfillment_status"],
            "email": order.get("email"),
        }
        for line in order.get("line_items") or [{}]:
            writer.writerow(
                {
                    **base,
                    "line_external_id": line.get("external_id"),
                    "sku": line.get("sku"),
                    "title": line.get("title"),
                    "quantity": line.get("quantity"),
                    "unit_price": (line.get("unit_price") or {}).get("amount"),
                }
            )
    return buffer.getvalue().encode()
