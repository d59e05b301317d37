"""Where the merchant's browser comes back to after approving an OAuth request, on a machine
with a browser: a one-shot HTTP listener on 127.0.0.1 that takes the first request to
``/callback``, answers a short page, and hands its query parameters over."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

PAGE = (
    b"<!doctype html><meta charset=utf-8><title>partnersync</title>"
    b"<p>Received. You can close this window and go back to the terminal.</p>"
)


class CallbackListener:
    """A listener for one OAuth callback on ``127.0.0.1:port`` (0: any free port)."""

    def __init__(self, port: int = 0) -> None:
        self.params: dict[str, str] | None = None
        self._received = threading.Event()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/callback":
                    self.send_error(404)
                    return
                if listener.params is None:
                    listener.params = dict(parse_qsl(parts.query))
                    listener._received.set()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(PAGE)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(PAGE)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the query carries a one-time code."""

        self._server = HTTPServer(("127.0.0.1", port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def redirect_uri(self) -> str:
        """The URL to register as the app's redirect URL."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/callback"

    def __enter__(self) -> CallbackListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait(self, timeout: float) -> dict[str, str] | None:
        """The callback's parameters, or None if none came within ``timeout`` seconds."""
        self._received.wait(timeout)
        return self.params
