"""Converters shared by mappers: exact money, aware datetimes, strict ints.

Each raises ``ValueError`` with a short reason; the mapper turns it into a
:class:`~partnersync.errors.MappingError` naming the record and field.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any


def to_decimal(value: Any) -> Decimal:
    """Parse a decimal string or int exactly; floats are refused (they already lost precision)."""
    if isinstance(value, bool | float):
        raise ValueError(f"expected a decimal string, got {type(value).__name__} {value!r}")
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError) as exc:
        raise ValueError(f"not a decimal number: {value!r}") from exc
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result


def to_int(value: Any) -> int:
    """Accept ints and integral strings; refuse floats, bools and garbage."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ValueError(f"expected an integer, got {value!r}")


def to_utc(value: Any) -> datetime:
    """Parse an ISO-8601 timestamp with an offset (``Z`` accepted) and normalise it to UTC."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ValueError(f"not an ISO-8601 timestamp: {value!r}") from exc
    else:
        raise ValueError(f"expected a timestamp string, got {type(value).__name__}")
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without timezone: {value!r}")
    return parsed.astimezone(UTC)


def to_optional_utc(value: Any) -> datetime | None:
    """Like :func:`to_utc`, but ``None`` stays ``None``."""
    return None if value is None else to_utc(value)


def upper_to_lower(value: Any) -> str:
    """Platform enum spelling (``PARTIALLY_PAID``) to canonical (``partially_paid``)."""
    if not isinstance(value, str):
        raise ValueError(f"expected an enum name, got {value!r}")
    return value.lower()
