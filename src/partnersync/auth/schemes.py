"""httpx.Auth flows: credentials go on requests here and nowhere else (STYLE habit 5)."""

from __future__ import annotations

from collections.abc import Generator

import httpx


class HeaderTokenAuth(httpx.Auth):
    """Sends a static token in one header, e.g. Shopify's ``X-Shopify-Access-Token``."""

    def __init__(self, header: str, token: str) -> None:
        self._header = header
        self._token = token

    def __repr__(self) -> str:
        return f"HeaderTokenAuth(header={self._header!r}, token=<redacted>)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """Add the header and send."""
        request.headers[self._header] = self._token
        yield request
