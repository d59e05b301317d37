"""Shopify search syntax, the subset the sandbox serves.

``updated_at:>='2026-01-01T00:00:00Z' AND created_at:<2026-02-01 AND sku:ABC id:>=1001``:
terms joined by ``AND`` or spaces; comparators ``>=``, ``<=``, ``>``, ``<`` or equality; values
optionally quoted. Timestamps compare at second precision in UTC. Terms for fields the sandbox
does not index are ignored and reported as warnings, as Shopify reports unknown search fields.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_TERM = re.compile(r"(?P<field>[a-z_]+):(?P<op>>=|<=|>|<)?(?P<value>'[^']*'|\"[^\"]*\"|\S+)")
_TIME_FIELDS = {"updated_at": "updatedAt", "created_at": "createdAt"}


@dataclass(frozen=True)
class Term:
    """One ``field:<op>value`` condition."""

    field: str
    op: str
    value: str


def parse_query(query: str | None) -> tuple[list[Term], list[str]]:
    """Terms and warnings (unparsable fragments) of a search query."""
    if not query:
        return [], []
    terms: list[Term] = []
    warnings: list[str] = []
    for chunk in re.split(r"\s+AND\s+|\s+", query.strip()):
        if not chunk:
            continue
        match = _TERM.fullmatch(chunk)
        if match is None:
            warnings.append(f"unsupported search term {chunk!r}")
            continue
        value = match["value"].strip("'\"")
        terms.append(Term(match["field"], match["op"] or "=", value))
    return terms, warnings


def _to_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "=": lambda a, b: a == b,
}


Check = Callable[[dict[str, Any]], bool]


def _time_check(key: str, bound: datetime, compare: Callable[[Any, Any], bool]) -> Check:
    return lambda record: compare(_to_time(record[key]), bound)


def _field_reader(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda record: str(record.get(name))


def _value_check(
    read: Callable[[dict[str, Any]], Any], bound: Any, compare: Callable[[Any, Any], bool]
) -> Check:
    return lambda record: compare(read(record), bound)


def build_filter(
    query: str | None, supported: set[str], id_number: Callable[[str], int]
) -> tuple[Callable[[dict[str, Any]], bool], list[str]]:
    """A predicate over stored records for ``query``, and warnings for ignored terms."""
    terms, warnings = parse_query(query)
    checks: list[Callable[[dict[str, Any]], bool]] = []
    for term in terms:
        if term.field not in supported:
            warnings.append(f"Invalid search field for this query: {term.field}")
            continue
        compare = _COMPARE[term.op]
        if term.field in _TIME_FIELDS:
            try:
                bound = _to_time(term.value)
            except ValueError:
                warnings.append(f"invalid timestamp {term.value!r}")
                continue
            checks.append(_time_check(_TIME_FIELDS[term.field], bound, compare))
        elif term.field == "id":
            number = int(term.value.rsplit("/", 1)[-1])
            checks.append(_value_check(lambda r: id_number(r["id"]), number, compare))
        else:
            checks.append(_value_check(_field_reader(term.field), term.value, compare))

    def matches(record: dict[str, Any]) -> bool:
        return all(check(record) for check in checks)

    return matches, warnings
