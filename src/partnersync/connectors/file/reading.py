"""Reading the files real systems export: any common encoding, any common delimiter, headers
in the user's own words.

* **Encoding**: UTF-8 (with or without a byte-order mark) first; otherwise detected with
  ``charset-normalizer`` (GBK/GB18030 from Chinese ERPs, cp1252/Latin-1 from Windows tools), or
  the account option ``encoding`` when set. A binary file, or text in no recognisable encoding,
  is :class:`UnreadableFile`.
* **Delimiter**: sniffed among ``,`` ``;`` tab and ``|`` from the first lines.
* **Headers**: matched case- and space-insensitively (``SKU``, `` Sku ``, ``sku`` are one), with
  the aliases in :data:`ALIASES` (``qty`` → ``available``, ``warehouse`` → ``location``, …);
  each row keeps the header as the user wrote it, so a missing column can be named in their
  words.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping
from typing import Any

import charset_normalizer
import orjson

ALIASES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "inventory": {
        "sku": ("sku", "item", "item_code", "product_code", "article", "outer_id"),
        "location": ("location", "location_name", "warehouse", "store", "site"),
        "available": ("available", "qty", "quantity", "stock", "on_hand", "available_qty"),
    },
    "products": {
        "handle": ("handle", "slug", "product_handle"),
        "title": ("title", "name", "product_name"),
        "sku": ("sku", "item_code", "variant_sku", "outer_id"),
        "price": ("price", "unit_price", "retail_price"),
        "compare_at_price": ("compare_at_price", "list_price", "msrp"),
        "option_name": ("option_name", "option"),
        "option_value": ("option_value", "variant", "variant_value"),
    },
    "fulfillments": {
        "order": ("order", "order_number", "order_no", "order_id", "order_ref"),
        "tracking_number": ("tracking_number", "tracking", "tracking_no", "tracking_code"),
        "carrier": ("carrier", "courier", "shipping_company"),
        "tracking_url": ("tracking_url", "tracking_link"),
        "sku": ("sku", "item_code"),
        "quantity": ("quantity", "qty"),
    },
}
"""Entity → canonical column → the header spellings accepted for it (after normalising)."""

DELIMITERS = ",;\t|"
BINARY_PROBE = 4096


class UnreadableFileError(Exception):
    """A file that is not text in any encoding we can read (the reason says which)."""


def normalize(header: str) -> str:
    """``" Tracking-Number "`` → ``tracking_number``."""
    return "_".join(header.strip().lower().replace("-", " ").split())


def column(entity: str, header: str) -> str:
    """The canonical column a header names (itself, normalised, when no alias matches)."""
    name = normalize(header)
    for canonical, spellings in ALIASES.get(entity, {}).items():
        if name in spellings:
            return canonical
    return name


def spellings(entity: str, canonical: str) -> str:
    """How a column may be written, for messages (``available (or qty, quantity, …)``)."""
    others = [s for s in ALIASES.get(entity, {}).get(canonical, ()) if s != canonical]
    return f"{canonical!r} (or {', '.join(others)})" if others else repr(canonical)


def decode(data: bytes, encoding: str | None = None) -> tuple[str, str]:
    """(text, encoding used); UnreadableFileError when it is not text we can read."""
    if b"\x00" in data[:BINARY_PROBE]:
        raise UnreadableFileError("a binary file, not CSV or JSONL text")
    if encoding:
        try:
            return data.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise UnreadableFileError(f"not {encoding} text as the account says: {exc}") from None
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        raise UnreadableFileError(
            "text in an encoding that could not be recognised (set the account option encoding)"
        )
    return str(best), best.encoding


def csv_rows(text: str, entity: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) pairs; columns renamed to the canonical ones, the header as written
    kept under ``_header``."""
    sample = "\n".join(text.splitlines()[:20])
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        delimiter = ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = next(reader, None)
    if header is None:
        return
    written = ", ".join(h.strip() for h in header if h.strip())
    names = [column(entity, h) if h.strip() else "" for h in header]
    line = 1
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        row: dict[str, Any] = {
            name: cell.strip() for name, cell in zip(names, cells, strict=False) if name
        }
        row["_header"] = written
        yield line, row


def jsonl_rows(text: str, entity: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) pairs, keys renamed like CSV headers; a bad line is kept as
    ``_invalid`` for its dead letter."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            yield number, {"_invalid": line.strip()}
            continue
        if not isinstance(value, dict):
            yield number, {"_invalid": repr(value)}
            continue
        row = {column(entity, str(k)): v for k, v in value.items()}
        row["_header"] = ", ".join(str(k) for k in value)
        yield number, row
