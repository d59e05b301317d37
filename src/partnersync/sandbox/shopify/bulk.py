"""Bulk query operations as the sandbox shop runs them (from Shopify's bulk operations guide and
the ``BulkOperation`` reference, never from our connector):

* ``bulkOperationRunQuery(query:, groupObjects:)`` checks the query — at least one connection,
  at most five, nested at most two levels, no top-level ``node``/``nodes`` — and answers the new
  operation (``CREATED``), or ``userErrors`` with ``INVALID`` or, past the API version's
  concurrency (one bulk query at a time before 2026-01, five from 2026-01),
  ``OPERATION_IN_PROGRESS``. The operation runs in the background (``RUNNING``) without page
  sizes, then ``COMPLETED`` with ``url``, ``objectCount``, ``rootObjectCount`` and
  ``fileSize``.
* The result is JSONL: one object per line; a node of a nested connection is a line of its own
  carrying ``__parentId``; with ``groupObjects`` the children follow their parent, otherwise the
  sandbox writes every parent first (children then come in any place after it).
* ``bulkOperation(id:)``, ``node(id:)`` and ``currentBulkOperation(type:)`` report status;
  ``url``/``partialDataUrl`` expire (here on request, ``expire_files``; seven days at Shopify).
* Knobs: ``fail_next`` (``FAILED``/``INTERNAL_SERVER_ERROR`` with a ``partialDataUrl`` of the
  first half), ``expire_next`` (``EXPIRED``, no file), ``delay`` (seconds spent ``RUNNING``).
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from graphql import FieldNode, GraphQLError, OperationDefinitionNode, parse

from partnersync.sandbox.framework import Reply

MAX_CONNECTIONS = 5
MAX_NESTING = 2


def concurrency(version: str) -> int:
    """Bulk query operations an app may run at once per shop in an API version."""
    return 5 if version == "unstable" or version >= "2026-01" else 1


def _connections(
    node: FieldNode, is_connection: Callable[[FieldNode], bool], depth: int
) -> list[int]:
    """The nesting depth of every connection field under ``node`` (itself included)."""
    found = [depth] if is_connection(node) else []
    below = depth + 1 if found else depth
    for child in node.selection_set.selections if node.selection_set else []:
        if isinstance(child, FieldNode):
            found.extend(_connections(child, is_connection, below))
        elif getattr(child, "selection_set", None) is not None:
            for grandchild in child.selection_set.selections:  # type: ignore[attr-defined]
                if isinstance(grandchild, FieldNode):
                    found.extend(_connections(grandchild, is_connection, below))
    return found


def check_query(query: str) -> str | None:
    """Why a bulk query is refused (None: it may run)."""
    try:
        document = parse(query)
    except GraphQLError as exc:
        return f"Invalid bulk query: {exc.message}"
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1:
        return "Invalid bulk query: exactly one query is required."
    roots = [s for s in operations[0].selection_set.selections if isinstance(s, FieldNode)]
    if len(roots) != 1:
        return "Bulk queries must contain exactly one top-level field."
    if roots[0].name.value in ("node", "nodes"):
        return "Bulk queries cannot use the top-level node or nodes field."

    def is_connection(node: FieldNode) -> bool:
        names = {
            s.name.value
            for s in (node.selection_set.selections if node.selection_set else [])
            if isinstance(s, FieldNode)
        }
        return "edges" in names or "nodes" in names

    depths = _connections(roots[0], is_connection, 0)
    if not depths:
        return "Bulk queries must contain at least one connection."
    if len(depths) > MAX_CONNECTIONS:
        return f"Bulk queries cannot contain more than {MAX_CONNECTIONS} connections."
    if max(depths) > MAX_NESTING:
        return f"Bulk queries cannot contain connections nested more than {MAX_NESTING} levels."
    return None


def _nodes(value: Any) -> list[dict[str, Any]] | None:
    """The nodes of a connection value (``nodes`` or ``edges { node }``), else None."""
    if not isinstance(value, dict):
        return None
    if isinstance(value.get("nodes"), list):
        return list(value["nodes"])
    if isinstance(value.get("edges"), list):
        return [edge["node"] for edge in value["edges"] if isinstance(edge, dict)]
    return None


def to_jsonl_parts(data: dict[str, Any], *, grouped: bool) -> tuple[list[bytes], list[bytes], int]:
    """Part of a bulk query's result as JSONL: (the lines written in place, the child lines an
    ungrouped file writes after every parent, the root objects)."""
    (root,) = data.values()
    roots = _nodes(root) or []
    lines: list[bytes] = []
    deferred: list[bytes] = []

    def emit(node: dict[str, Any], parent: str | None) -> None:
        line: dict[str, Any] = {}
        children: list[dict[str, Any]] = []
        for key, value in node.items():
            nested = _nodes(value)
            if nested is not None:
                children.extend(nested)
            else:
                line[key] = value
        if parent is not None:
            line["__parentId"] = parent
        encoded = orjson.dumps(line)
        (lines if grouped or parent is None else deferred).append(encoded)
        for child in children:
            emit(child, str(node.get("id")))

    for node in roots:
        emit(node, None)
    return lines, deferred, len(roots)


@dataclass
class _Operation:
    id: str
    query: str
    grouped: bool
    status: str = "CREATED"
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    completed_at: str | None = None
    error_code: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    file_size: int | None = None
    url: str | None = None
    partial_url: str | None = None


class BulkOperations:
    """The shop's bulk query operations and their result files."""

    def __init__(
        self, run: Callable[[str], Iterable[dict[str, Any]]], base_url: Callable[[], str]
    ) -> None:
        self._run = run
        self._base_url = base_url
        self.operations: dict[str, _Operation] = {}
        self.files: dict[str, bytes] = {}
        self.fail_next = 0
        self.expire_next = 0
        self.delay = 0.0
        self.started = 0
        self.changes = 0
        """Bumped whenever an operation changes (answers about them are never cached)."""
        self._lock = threading.Lock()
        self._next = 1

    # -- GraphQL ---------------------------------------------------------------------------
    def run_query(self, query: str, group_objects: bool, version: str) -> dict[str, Any]:
        """``bulkOperationRunQuery``'s payload."""
        refused = check_query(query)
        if refused is not None:
            return {"bulkOperation": None, "userErrors": [_error("INVALID", refused)]}
        with self._lock:
            running = [o for o in self.operations.values() if o.status in ("CREATED", "RUNNING")]
            if len(running) >= concurrency(version):
                return {
                    "bulkOperation": None,
                    "userErrors": [
                        _error(
                            "OPERATION_IN_PROGRESS",
                            "A bulk query operation for this app and shop is already in "
                            f"progress: {running[0].id}.",
                        )
                    ],
                }
            operation = _Operation(
                f"gid://shopify/BulkOperation/{self._next}", query, group_objects
            )
            self._next += 1
            self.operations[operation.id] = operation
            self.started += 1
            self.changes += 1
        threading.Thread(target=self._execute, args=(operation,), daemon=True).start()
        return {"bulkOperation": self.view(operation), "userErrors": []}

    def view(self, operation: _Operation) -> dict[str, Any]:
        """A ``BulkOperation`` object."""
        return {
            "__typename": "BulkOperation",
            "id": operation.id,
            "status": operation.status,
            "errorCode": operation.error_code,
            "createdAt": operation.created_at,
            "completedAt": operation.completed_at,
            "objectCount": str(operation.object_count),
            "rootObjectCount": str(operation.root_object_count),
            "fileSize": str(operation.file_size) if operation.file_size is not None else None,
            "url": operation.url,
            "partialDataUrl": operation.partial_url,
            "query": operation.query,
            "type": "QUERY",
        }

    def find(self, operation_id: str) -> dict[str, Any] | None:
        """``bulkOperation(id:)`` / ``node(id:)``."""
        operation = self.operations.get(operation_id)
        return self.view(operation) if operation else None

    def current(self) -> dict[str, Any] | None:
        """``currentBulkOperation(type: QUERY)``: the newest one."""
        if not self.operations:
            return None
        return self.view(list(self.operations.values())[-1])

    def expire_files(self) -> None:
        """Every result URL given out stops working (as after seven days)."""
        self.files.clear()
        self.changes += 1

    # -- the work --------------------------------------------------------------------------
    def _execute(self, operation: _Operation) -> None:
        try:
            self._work(operation)
        finally:
            self.changes += 1

    def _work(self, operation: _Operation) -> None:
        operation.status = "RUNNING"
        self.changes += 1
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            expire = self.expire_next > 0
            self.expire_next -= int(expire)
            fail = not expire and self.fail_next > 0
            self.fail_next -= int(fail)
        if expire:
            operation.status = "EXPIRED"
            return
        # The file is written part by part into one buffer: holding every line as its own
        # object cost more (allocation) than making the lines, and grew with the shop.
        body = io.BytesIO()
        children: list[bytes] = []
        lines = roots = 0
        for data in self._run(operation.query):
            parents, deferred, found = to_jsonl_parts(data, grouped=operation.grouped)
            if parents:
                body.write(b"\n".join(parents) + b"\n")
            if deferred:
                children.append(b"\n".join(deferred) + b"\n")
            lines += len(parents) + len(deferred)
            roots += found
        for block in children:  # ungrouped: children after every parent
            body.write(block)
        if fail:
            kept = body.getvalue().split(b"\n")[: lines // 2]
            operation.partial_url = self._publish(b"".join(line + b"\n" for line in kept))
            operation.object_count = len(kept)
            operation.status, operation.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
            return
        operation.url = self._publish(body.getvalue()) if lines else None
        operation.object_count = lines
        operation.root_object_count = roots
        operation.file_size = body.tell()
        operation.completed_at = datetime.now(UTC).isoformat()
        operation.status = "COMPLETED"

    def _publish(self, body: bytes) -> str:
        token = secrets.token_urlsafe(16)
        self.files[token] = body
        return f"{self._base_url()}/bulk-results/{token}.jsonl"

    def serve_file(self, path: str) -> Reply:
        """``GET /bulk-results/TOKEN.jsonl`` (a signed URL: 403 once expired)."""
        token = path.rsplit("/", 1)[-1].removesuffix(".jsonl")
        body = self.files.get(token)
        if body is None:
            return (
                403,
                {"Content-Type": "application/xml"},
                b"<Error><Code>ExpiredToken</Code></Error>",
            )
        return 200, {"Content-Type": "application/jsonl"}, body


def _error(code: str, message: str) -> dict[str, Any]:
    return {"field": ["query"], "message": message, "code": code}


__all__ = ["BulkOperations", "check_query", "concurrency", "to_jsonl_parts"]
