"""File import mappers: rows from the brand's CSV/JSONL drops → canonical records.

Columns are the brand's, so every value arrives as text (CSV) or JSON; the mappers parse
strictly and say which file, line, field and reason when a row is wrong.
"""

from __future__ import annotations

from typing import Any

from partnersync.connectors.file.reading import spellings
from partnersync.mapping.convert import to_decimal, to_int, to_utc
from partnersync.mapping.mapper import Direct, Mapper, Record, mapping
from partnersync.mapping.model import InventoryLevel, Product, Shipment

PLATFORM = "file"


def _updated_at(record: Record) -> Any:
    return to_utc(record.get("updated_at") or record.get("_mtime"))


def origin_and_time(mapper: Mapper[Any], record: Record) -> dict[str, Any]:
    """``origin`` and ``updated_at``: the row's own time, or else its file's."""
    stamp = _updated_at(record)
    return {
        "origin": {
            "account": mapper.context.account,
            "platform": PLATFORM,
            "external_id": mapper.external_id(record),
            "updated_at": stamp,
            "version": record.get("version"),
        },
        "updated_at": stamp,
    }


def _reject_unreadable(record: Record) -> None:
    """A file the connector could not read arrives as one record saying why."""
    if record.get("_unreadable"):
        raise ValueError(str(record["_unreadable"]))
    if record.get("_invalid"):
        raise ValueError(f"not a JSON object: {str(record['_invalid'])[:80]!r}")


def _require_column(record: Record, entity: str, name: str) -> Any:
    """The value of a column the file must have; its absence is named in the user's words."""
    if name not in record:
        raise ValueError(
            f"column {spellings(entity, name)} is missing from {record.get('_file')}; "
            f"its header is: {record.get('_header') or '(empty)'}"
        )
    return record[name]


def _reject_duplicate(record: Record, what: str) -> None:
    if record.get("_duplicate_of"):
        raise ValueError(
            f"duplicate {what}: also on line {record['_duplicate_of']} of {record['_file']}"
        )


def _strict_int(value: Any) -> int:
    if isinstance(value, str) and value.strip() == "":
        raise ValueError("stock is empty")
    try:
        return to_int(value)
    except ValueError:
        raise ValueError(f"stock is not a whole number: {value!r}") from None


def _stock(value: Any, bound: int) -> int:
    """Whole units, never negative, never absurd (a broken export must not become a write)."""
    count = _strict_int(value)
    if count < 0:
        raise ValueError(f"stock is negative: {count}")
    if count > bound:
        raise ValueError(f"stock {count} is above this account's max_stock ({bound})")
    return count


class FileInventoryImportMapper(Mapper[InventoryLevel]):
    """``sku, location, available[, updated_at]`` → :class:`InventoryLevel`."""

    model = InventoryLevel
    entity = "inventory"

    def external_id(self, record: Record) -> str | None:
        """``SKU@location`` identifies a stock position."""
        if not record.get("sku"):
            return None
        return f"{record['sku']}@{record.get('location') or ''}"

    @mapping("sku")
    def sku(self, record: Record) -> dict[str, Any]:
        """The join key; a second row for it (and its location) in one file is refused."""
        _reject_unreadable(record)
        sku = _require_column(record, "inventory", "sku")
        if not sku:
            raise ValueError("sku is missing")
        _reject_duplicate(record, f"SKU {sku!r} at {record.get('location') or '(no location)'}")
        return {"sku": str(sku)}

    @mapping("location_id", "location_name")
    def location(self, record: Record) -> dict[str, Any]:
        """The stock's location, as the file names it."""
        _reject_unreadable(record)
        location = _require_column(record, "inventory", "location")
        if not location:
            raise ValueError("location is empty")
        return {"location_id": str(location), "location_name": str(location)}

    @mapping("available")
    def available(self, record: Record) -> dict[str, Any]:
        """Whole units available to sell: never negative, at most the account's bound."""
        _reject_unreadable(record)
        value = _require_column(record, "inventory", "available")
        bound = int(self.context.settings.get("max_stock") or 1_000_000)
        return {"available": _stock(value, bound)}

    @mapping("origin", "updated_at")
    def origin(self, record: Record) -> dict[str, Any]:
        """Position id; the row's ``updated_at`` or else the file's time."""
        return origin_and_time(self, record)


class FileProductImportMapper(Mapper[Product]):
    """Rows grouped by ``handle`` (one per variant) → :class:`Product`."""

    model = Product
    entity = "products"
    external_id_path = "handle"

    @mapping("title", "handle", "status", "vendor", "product_type", "description_html", "tags")
    def header(self, record: Record) -> dict[str, Any]:
        """Product-level columns, taken from the first row that has them."""
        _reject_unreadable(record)
        _require_column(record, "products", "handle")
        rows = record.get("rows") or []

        def first(column: str) -> Any:
            return next((r[column] for r in rows if r.get(column)), None)

        tags = first("tags")
        return {
            "title": first("title"),
            "handle": record.get("handle"),
            "status": status.lower() if isinstance(status := first("status"), str) else None,
            "vendor": first("vendor"),
            "product_type": first("product_type"),
            "description_html": first("description_html"),
            "tags": [t.strip() for t in tags.split(",")] if isinstance(tags, str) else tags or [],
        }

    @mapping("variants", "options")
    def variants(self, record: Record) -> dict[str, Any]:
        """One variant per row; prices are exact decimals in the row's currency."""
        variants: list[dict[str, Any]] = []
        option_names: dict[str, list[str]] = {}
        for row in record.get("rows") or []:
            where = f"line {row['_line']}"
            if not row.get("sku"):
                raise ValueError(f"{where}: sku is missing")
            _reject_duplicate(row, f"SKU {row['sku']!r}")
            currency = row.get("currency") or self.context.settings.get("currency") or "USD"
            try:
                price = to_decimal(row.get("price"))
                compare = row.get("compare_at_price")
                compare_money = (
                    {"amount": to_decimal(compare), "currency": currency} if compare else None
                )
            except ValueError as exc:
                raise ValueError(f"{where}: price: {exc}") from None
            options = {}
            if row.get("option_name"):
                options[row["option_name"]] = row.get("option_value") or ""
                values = option_names.setdefault(row["option_name"], [])
                if row.get("option_value") and row["option_value"] not in values:
                    values.append(row["option_value"])
            variants.append(
                {
                    "external_id": f"{record.get('handle')}/{row['sku']}",
                    "sku": row["sku"],
                    "barcode": row.get("barcode") or None,
                    "title": row.get("option_value") or row.get("variant_title") or "Default",
                    "price": {"amount": price, "currency": currency},
                    "compare_at_price": compare_money,
                    "position": len(variants) + 1,
                    "options": options,
                }
            )
        return {
            "variants": variants,
            "options": [{"name": n, "values": v} for n, v in option_names.items()],
        }

    @mapping("origin", "updated_at")
    def origin(self, record: Record) -> dict[str, Any]:
        """Handle as id; newest row ``updated_at`` or the file's time."""
        return origin_and_time(self, record)


class FileShipmentImportMapper(Mapper[Shipment]):
    """A parcel — the rows of one ``order`` and ``tracking_number`` (with ``carrier``,
    ``tracking_url``, ``channel`` from its first row) — → :class:`Shipment`; rows with ``sku``
    and ``quantity`` are what it carries."""

    model = Shipment
    entity = "fulfillments"
    direct = (
        Direct("order", "order_ref"),
        Direct("channel", "channel"),
        Direct("carrier", "carrier"),
        Direct("tracking_url", "tracking_url"),
    )

    def external_id(self, record: Record) -> str | None:
        """``order#tracking`` identifies a shipment."""
        if not record.get("order"):
            return None
        return f"{record['order']}#{record.get('tracking_number') or ''}"

    @mapping("tracking_number")
    def tracking(self, record: Record) -> dict[str, Any]:
        """Required; one shipment per (order, tracking number) in a file."""
        _reject_unreadable(record)
        _require_column(record, "fulfillments", "tracking_number")
        if not record.get("tracking_number"):
            raise ValueError("tracking_number is missing")
        return {"tracking_number": str(record["tracking_number"])}

    @mapping("lines")
    def lines(self, record: Record) -> dict[str, Any]:
        """One line per row with a ``sku``; a parcel's rows all name one, or it has one row."""
        _reject_unreadable(record)
        rows = record.get("rows") or [record]
        tracking = record.get("tracking_number")
        if len(rows) > 1 and any(not row.get("sku") for row in rows):
            raise ValueError(
                f"duplicate shipment {tracking!r}: {len(rows)} rows on lines "
                f"{', '.join(str(r['_line']) for r in rows)} of {record['_file']}; several rows "
                "for one parcel each need a sku and quantity"
            )
        lines = []
        for row in rows:
            if not row.get("sku"):
                continue
            _reject_duplicate(row, f"SKU {row['sku']!r} in parcel {tracking!r}")
            try:
                quantity = to_int(row.get("quantity"))
            except ValueError:
                raise ValueError(
                    f"line {row['_line']}: quantity of {row['sku']!r} is not a whole number: "
                    f"{row.get('quantity')!r}"
                ) from None
            if quantity <= 0:
                raise ValueError(
                    f"line {row['_line']}: quantity of {row['sku']!r} must be 1 or more"
                )
            lines.append({"sku": str(row["sku"]), "quantity": quantity})
        return {"lines": lines}

    @mapping("origin", "updated_at")
    def origin(self, record: Record) -> dict[str, Any]:
        """Shipment id; the row's time or the file's."""
        return origin_and_time(self, record)


IMPORT_MAPPERS: dict[str, type[Mapper[Any]]] = {
    "inventory": FileInventoryImportMapper,
    "products": FileProductImportMapper,
    "fulfillments": FileShipmentImportMapper,
}
"""Entity → import mapper."""
