"""Requests go only to public addresses — checked when the connection is made, not only when
the account was added: a name that resolved to a public address then and resolves to
127.0.0.1, 10.x, 169.254.169.254 or a local IPv6 address now (DNS rebinding) is refused, and the
target sees nothing.

The check resolves the name once and pins the connection to the address it checked (the URL
carries the address; the ``Host`` header and TLS server name keep the name, so the certificate
is still verified for the name), so a second answer from DNS cannot slip in between the check
and the connect.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable

import anyio
import httpx

from partnersync.config import host_address, is_internal_address
from partnersync.errors import Action, ConnectorError

Resolver = Callable[[str, int], Awaitable[list[str]]]


class BlockedAddressError(ConnectorError):
    """The host resolves to an address partnersync does not send requests to."""

    action = Action.FAIL


async def system_resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to now."""
    infos = await anyio.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos]


class AddressGuardTransport(httpx.AsyncBaseTransport):
    """Wraps a transport: resolve, refuse internal addresses, pin the checked one."""

    def __init__(
        self, inner: httpx.AsyncBaseTransport | None = None, resolve: Resolver | None = None
    ) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.resolve = resolve or system_resolve

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Check the address the request would go to, then send it there and nowhere else."""
        host = request.url.host
        port = request.url.port or (443 if request.url.scheme == "https" else 80)
        literal = host_address(host)
        addresses = [str(literal)] if literal is not None else await self.resolve(host, port)
        if not addresses:
            raise BlockedAddressError(f"{host} does not resolve")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped
            if address.is_loopback or is_internal_address(address):
                raise BlockedAddressError(
                    f"{host} resolves to {address}, a private or local address: refused"
                )
        pinned = addresses[0]
        if pinned != host:
            request.url = request.url.copy_with(host=pinned)
            request.extensions = {**request.extensions, "sni_hostname": host}
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self.inner.aclose()
