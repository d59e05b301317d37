"""Every non-null field of Shopify's schema resolves in the sandbox.

The sandbox stores the fields our tests and the clients we hold it to actually read; Shopify's
types have many more non-null fields (an Order has dozens). A real client that selects "every
field of its schema" (tap-shopify does) must not get ``Cannot return null for non-nullable
field`` — which nulls out the whole page. So a field the stored record does not have is filled
from its type: a scalar with a plausible value of that scalar (timestamps from the record's own
``createdAt``/``updatedAt``, ids derived from the record's id, amounts ``0.0``, counts ``0``),
an enum with its first value, an object or interface (its first possible type) whose own
non-null fields fill the same way, a list or connection empty. Nullable fields the record lacks
stay null, as Shopify leaves absent optional data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
    default_field_resolver,
)

_SCALARS: dict[str, Any] = {
    "Boolean": False,
    "Int": 0,
    "Float": 0.0,
    "String": "",
    "HTML": "",
    "FormattedString": "",
    "Decimal": "0.0",
    "Money": "0.0",
    "UnsignedInt64": "0",
    "BigInt": "0",
    "URL": "https://sandbox-shop.myshopify.com/",
    "Color": "#000000",
    "UtcOffset": "+00:00",
    "JSON": {},
    "Date": "2026-01-01",
    "ARN": "arn:aws:events:us-east-1::event-source/sandbox",
}


def filling_resolver(source: Any, info: Any, **args: Any) -> Any:
    """graphql-core's default resolver, then, for a non-null field the source lacks, a value
    filled from the field's type (see module doc)."""
    value = default_field_resolver(source, info, **args)
    if value is not None or not isinstance(info.return_type, GraphQLNonNull):
        return value
    if isinstance(source, dict) and source.get(info.field_name) is not None:
        return value
    return fill(info.return_type, info, source)


def fill_missing(source: Any, info: Any) -> Any:
    """The value :func:`filling_resolver` gives a non-null field that ``source`` lacks."""
    return fill(info.return_type, info, source)


def fill(kind: Any, info: Any, source: Any) -> Any:
    """A value of GraphQL type ``kind`` for a field of ``source``."""
    if isinstance(kind, GraphQLNonNull):
        return fill(kind.of_type, info, source)
    if isinstance(kind, GraphQLList):
        return []
    if isinstance(kind, GraphQLEnumType):
        return next(iter(kind.values))
    if isinstance(kind, GraphQLScalarType):
        return _scalar(kind.name, info.field_name, source)
    if isinstance(kind, GraphQLInterfaceType | GraphQLUnionType):
        possible = info.schema.get_possible_types(kind)
        return {"__typename": possible[0].name, **_inherited(source)} if possible else {}
    if isinstance(kind, GraphQLObjectType):
        return {"__typename": kind.name, **_inherited(source)}
    return None


def _inherited(source: Any) -> dict[str, Any]:
    """What a filled child object takes from its parent: the times (so a nested timestamp is
    the record's, not the epoch)."""
    if not isinstance(source, dict):
        return {}
    return {key: source[key] for key in ("createdAt", "updatedAt") if source.get(key)}


def _scalar(name: str, field: str, source: Any) -> Any:
    record = source if isinstance(source, dict) else {}
    if name == "DateTime":
        stamp = record.get("updatedAt") or record.get("createdAt")
        return stamp or datetime(2026, 1, 1, tzinfo=UTC).isoformat().replace("+00:00", "Z")
    if name == "ID":
        base = str(record.get("id") or "gid://shopify/Sandbox/1")
        return f"{base.split('?')[0]}/{field}" if field != "id" else base
    if name == "UnsignedInt64" and field == "legacyResourceId" and record.get("id"):
        return str(record["id"]).rsplit("/", 1)[-1]
    return _SCALARS.get(name, "")
