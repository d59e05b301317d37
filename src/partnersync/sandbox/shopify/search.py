"""Shopify's API search syntax, as the sandbox serves it (from Shopify's "API search syntax"
page, never from our connector):

* a query is terms separated by whitespace and optionally by single connectives; ``AND`` is
  implied between terms, ``OR`` is the other connective, ``AND`` binds tighter than ``OR``;
* ``NOT term`` or ``-term`` negates; parentheses group;
* a term is ``field:value`` with an optional comparator (``:<``, ``:<=``, ``:>``, ``:>=``),
  ``field:*`` (the field exists), or a bare value (free text);
* a value is a name or a quoted string (single or double quotes) which may hold spaces — so
  ``updated_at:>='2026-11-21 08:29:40+00:00'`` is one term; ``\\`` escapes ``: \\ ( )``.

Timestamps compare at second precision in UTC. A term on a field the connection does not index,
free text where the connection has no ``default`` field (elsewhere it matches records with the
text in any of their fields, case-insensitively), and anything unparsable are ignored and
reported as search warnings (Shopify answers
them in ``extensions.search``) — the rest of the query still applies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_TIME_FIELDS = {"updated_at": "updatedAt", "created_at": "createdAt"}
_COMPARATORS = (">=", "<=", ">", "<")

Check = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class Term:
    """One ``field:<comparator>value`` condition (``field`` empty for free text)."""

    field: str
    op: str
    value: str


@dataclass(frozen=True)
class _Token:
    text: str
    quoted: bool = False


def tokenize(query: str) -> list[_Token]:
    """Words, quoted strings (kept whole, quotes removed, marked), ``(`` and ``)``; a quoted
    string right after ``field:`` (and its comparator) joins that word."""
    tokens: list[_Token] = []
    word: list[str] = []
    quoted_in_word = False
    index = 0

    def flush() -> None:
        nonlocal quoted_in_word
        if word:
            tokens.append(_Token("".join(word), quoted_in_word))
            word.clear()
        quoted_in_word = False

    while index < len(query):
        char = query[index]
        if char == "\\" and index + 1 < len(query):
            word.append(query[index + 1])
            index += 2
            continue
        if char.isspace():
            flush()
        elif char in "()" and not word:
            tokens.append(_Token(char))
        elif char == ")":
            flush()
            tokens.append(_Token(char))
        elif char in "'\"":
            end = query.find(char, index + 1)
            if end == -1:
                end = len(query)
            word.append(query[index + 1 : end])
            quoted_in_word = True
            index = end + 1
            continue
        else:
            word.append(char)
        index += 1
    flush()
    return tokens


def parse_term(token: _Token) -> Term:
    """A word as a term: ``field:>=value``, ``field:value``, ``field:*`` or free text."""
    text = token.text
    field, colon, rest = text.partition(":")
    if not colon or not field.replace("_", "").replace(".", "").isalnum():
        return Term("", "=", text)
    for comparator in _COMPARATORS:
        if rest.startswith(comparator):
            return Term(field, comparator, rest[len(comparator) :])
    return Term(field, "*" if rest == "*" else "=", rest)


class _Parser:
    """Recursive descent over the tokens: OR of ANDs of (NOT) units."""

    def __init__(self, tokens: list[_Token], make: Callable[[Term], Check | None]) -> None:
        self.tokens = tokens
        self.position = 0
        self.make = make

    def _peek(self) -> str | None:
        if self.position >= len(self.tokens):
            return None
        token = self.tokens[self.position]
        return None if token.quoted else token.text

    def parse(self) -> Check:
        check = self._or()
        return check

    def _or(self) -> Check:
        parts = [self._and()]
        while self._peek() == "OR":
            self.position += 1
            parts.append(self._and())
        if len(parts) == 1:
            return parts[0]
        return lambda record: any(part(record) for part in parts)

    def _and(self) -> Check:
        parts = [self._unit()]
        while self.position < len(self.tokens) and self._peek() not in ("OR", ")"):
            if self._peek() == "AND":
                self.position += 1
            parts.append(self._unit())
        return lambda record: all(part(record) for part in parts)

    def _unit(self) -> Check:
        if self.position >= len(self.tokens):
            return _always
        token = self.tokens[self.position]
        self.position += 1
        if not token.quoted and token.text == "NOT":
            inner = self._unit()
            return lambda record: not inner(record)
        if not token.quoted and token.text == "(":
            inner = self._or()
            if self._peek() == ")":
                self.position += 1
            return inner
        if not token.quoted and token.text.startswith("-") and len(token.text) > 1:
            negated = self.make(parse_term(_Token(token.text[1:], token.quoted)))
            return _always if negated is None else (lambda record: not negated(record))
        check = self.make(parse_term(token))
        return _always if check is None else check


def _always(record: dict[str, Any]) -> bool:
    return True


def _to_time(value: str) -> datetime:
    text = value.strip().replace("Z", "+00:00")
    parsed = datetime.fromisoformat(text)
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


def build_filter(
    query: str | None,
    supported: set[str],
    id_number: Callable[[str], int],
    fields: dict[str, str] | None = None,
) -> tuple[Callable[[dict[str, Any]], bool], list[dict[str, str]]]:
    """A predicate over stored records for ``query``, and the search warnings (``field`` and
    ``message``) of the terms it ignored. ``fields`` maps search fields to record keys where
    they differ (``location_id`` → ``_location``)."""
    warnings: list[dict[str, str]] = []
    if not query or not query.strip():
        return _always, warnings
    keys = fields or {}

    def make(term: Term) -> Check | None:
        if not term.field and "default" in supported:
            wanted_text = term.value.lower()
            return lambda record: any(
                wanted_text in value.lower()
                for key, value in record.items()
                if isinstance(value, str) and not key.startswith("_")
            )
        if not term.field:
            warnings.append(
                {
                    "field": "",
                    "message": f"Free-text search is not supported "
                    f"by the sandbox: {term.value!r} was ignored.",
                }
            )
            return None
        if term.field not in supported:
            warnings.append(
                {"field": term.field, "message": "Invalid search field for this query."}
            )
            return None
        if term.op == "*":
            key = keys.get(term.field) or _TIME_FIELDS.get(term.field, term.field)
            return lambda record: record.get(key) not in (None, "", [])
        compare = _COMPARE[term.op]
        if term.field in _TIME_FIELDS:
            try:
                bound = _to_time(term.value)
            except ValueError:
                warnings.append(
                    {"field": term.field, "message": f"Invalid timestamp: {term.value!r}."}
                )
                return None
            key = _TIME_FIELDS[term.field]
            return lambda record: compare(_to_time(record[key]), bound)
        if term.field == "id" or (term.field in keys and term.field.endswith("_id")):
            try:
                number = int(term.value.rsplit("/", 1)[-1])
            except ValueError:
                warnings.append({"field": term.field, "message": f"Invalid id: {term.value!r}."})
                return None
            key = keys.get(term.field, "id")
            return lambda record: compare(id_number(str(record.get(key, ""))), number)
        key = keys.get(term.field, term.field)
        wanted = term.value.lower()
        return lambda record: compare(str(record.get(key, "")).lower(), wanted)

    check = _Parser(tokenize(query), make).parse()
    return check, warnings
