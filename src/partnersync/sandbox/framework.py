"""What every sandbox shares: a loopback HTTP server, a leaky bucket, faults and a request log.

A sandbox subclass implements :meth:`Sandbox.handle` for its protocol and :meth:`Sandbox.control`
for the ``/_sandbox/...`` endpoints tests and the demo use to change data from another process.
Servers bind 127.0.0.1 on a free port (or the port given) and run in a daemon thread::

    with ShopifySandbox(token="t") as shop:
        print(shop.url)
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import orjson

Reply = tuple[int, dict[str, str], bytes]
DROP: Reply = (0, {}, b"")
"""Returned by a sandbox to close the connection without answering (a lost response)."""


def json_reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> Reply:
    """A JSON response triple."""
    return status, {"Content-Type": "application/json", **(headers or {})}, orjson.dumps(body)


class LeakyBucket:
    """A thread-safe leaky bucket of points, as platforms with cost-based limits keep it."""

    def __init__(self, capacity: float, restore_rate: float) -> None:
        self.capacity = float(capacity)
        self.restore_rate = float(restore_rate)
        self._available = float(capacity)
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._available = min(
            self.capacity, self._available + (now - self._stamp) * self.restore_rate
        )
        self._stamp = now

    def try_spend(self, cost: float) -> tuple[bool, float]:
        """Spend ``cost`` if available; returns (spent, available afterwards)."""
        with self._lock:
            self._refill()
            if self._available < cost:
                return False, self._available
            self._available -= cost
            return True, self._available

    def refund(self, amount: float) -> float:
        """Give back points (requested minus actual cost); returns available afterwards."""
        with self._lock:
            self._refill()
            self._available = min(self.capacity, self._available + max(0.0, amount))
            return self._available

    def set_limits(self, capacity: float | None = None, restore_rate: float | None = None) -> None:
        """Change the bucket (a platform lowering limits mid-run)."""
        with self._lock:
            self._refill()
            if capacity is not None:
                self.capacity = float(capacity)
                self._available = min(self._available, self.capacity)
            if restore_rate is not None:
                self.restore_rate = float(restore_rate)


@dataclass
class Faults:
    """Fault knobs: statuses to answer instead of serving, and hooks after each request."""

    fail_next: deque[int] = field(default_factory=deque)
    after_request: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)
    drop_after_commit: dict[str, int] = field(default_factory=dict)
    drop_rates: dict[str, float] = field(default_factory=dict)
    latency: float = 0.0
    """Seconds each protocol request takes before it is served (a slow network or platform)."""
    _random: random.Random = field(default_factory=random.Random)

    def fail(self, status: int, times: int = 1) -> None:
        """Answer the next ``times`` protocol requests with ``status``."""
        self.fail_next.extend([status] * times)

    def drop(self, operation: str, times: int = 1) -> None:
        """Apply the next ``times`` ``operation`` writes, then drop the connection unanswered."""
        self.drop_after_commit[operation] = self.drop_after_commit.get(operation, 0) + times

    def drop_rate(self, operation: str, rate: float, *, seed: int | None = None) -> None:
        """Drop each ``operation`` answer with probability ``rate`` (after applying the write)."""
        self.drop_rates[operation] = rate
        if seed is not None:
            self._random.seed(seed)

    def take_drop(self, operation: str) -> bool:
        """Whether this ``operation``'s response is to be dropped (consumes a counted drop)."""
        left = self.drop_after_commit.get(operation, 0)
        if left > 0:
            self.drop_after_commit[operation] = left - 1
            return True
        rate = self.drop_rates.get(operation, 0.0)
        return rate > 0 and self._random.random() < rate


class RequestLog:
    """Every protocol request the sandbox served, in memory and optionally as JSONL on disk."""

    def __init__(self, path: Path | None = None) -> None:
        self.entries: list[dict[str, Any]] = []
        self.path = path
        self._lock = threading.Lock()
        self._context = threading.local()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def annotate(self, **fields: Any) -> None:
        """Fields every entry this thread logs carries until :meth:`clear_context` (the
        request's path, id, API version, variables)."""
        current = getattr(self._context, "fields", {})
        self._context.fields = {**current, **fields}

    def clear_context(self) -> None:
        """Forget this thread's fields (the request is answered)."""
        self._context.fields = {}

    def append(self, entry: dict[str, Any]) -> None:
        """Record one request."""
        entry = {**getattr(self._context, "fields", {}), **entry}
        with self._lock:
            self.entries.append(entry)
            if self.path is not None:
                with self.path.open("ab") as handle:
                    handle.write(orjson.dumps(entry) + b"\n")

    def clear(self) -> None:
        """Forget what was logged (the file is kept)."""
        with self._lock:
            self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: without TCP_NODELAY each response waits ~40 ms
    # for a delayed ACK.
    disable_nagle_algorithm = True

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        sandbox = self.server.sandbox
        try:
            if self.path.startswith("/_sandbox/"):
                status, reply_headers, payload = sandbox.control_request(
                    self.command, self.path, body
                )
            else:
                if sandbox.faults.latency > 0:
                    time.sleep(sandbox.faults.latency)
                status, reply_headers, payload = sandbox.dispatch(
                    self.command, self.path, headers, body
                )
        except Exception as exc:  # a sandbox bug must answer, not hang the client
            status, reply_headers, payload = json_reply(500, {"errors": f"sandbox error: {exc!r}"})
        if status == DROP[0]:
            # The write happened; the client never hears of it.
            self.close_connection = True
            return
        self.send_response(status)
        for key, value in reply_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log (we keep our own JSONL log)."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        super().__init__(address, _Handler)


class Sandbox:
    """Base of platform sandboxes: lifecycle, request log, fault knobs, control endpoints."""

    platform = "sandbox"

    def __init__(self, *, port: int = 0, log_path: Path | None = None) -> None:
        self.port = port
        self.log = RequestLog(log_path)
        self.faults = Faults()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Self:
        """Serve on 127.0.0.1 in a daemon thread."""
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{self.platform}-sandbox", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (``partnersync sandbox serve``)."""
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        try:
            self._server.serve_forever()
        finally:
            self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        return f"http://127.0.0.1:{self.port}"

    def credentials(self) -> dict[str, str]:
        """The secrets an account needs to talk to this sandbox."""
        raise NotImplementedError

    # -- protocol ------------------------------------------------------------------------
    def dispatch(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Apply fault knobs, then the platform protocol."""
        if self.faults.fail_next:
            status = self.faults.fail_next.popleft()
            self.log.append({"t": time.monotonic(), "path": path, "status": status, "fault": True})
            return json_reply(status, {"errors": "injected fault"})
        reply = self.handle(method, path, headers, body)
        for hook in list(self.faults.after_request):
            hook(self.log.entries[-1] if self.log.entries else {})
        return reply

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
        """Serve one request of the platform's protocol."""
        raise NotImplementedError

    def control_request(self, method: str, path: str, body: bytes) -> Reply:
        """``/_sandbox/<action>``: JSON in, JSON out."""
        action = path.removeprefix("/_sandbox/").split("?")[0]
        try:
            payload = json.loads(body) if body else {}
            return json_reply(200, self.control(action, payload))
        except (KeyError, ValueError, TypeError) as exc:
            return json_reply(400, {"error": str(exc)})

    def control(self, action: str, payload: dict[str, Any]) -> Any:
        """Handle a control action; subclasses extend."""
        if action == "log":
            return self.log.entries
        if action == "fail":
            self.faults.fail(int(payload["status"]), int(payload.get("times", 1)))
            return {"ok": True}
        if action == "drop":
            self.faults.drop(str(payload["operation"]), int(payload.get("times", 1)))
            return {"ok": True}
        if action == "latency":
            self.faults.latency = float(payload["seconds"])
            return {"ok": True}
        raise KeyError(f"unknown sandbox action {action!r}")
