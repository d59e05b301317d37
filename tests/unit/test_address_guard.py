"""Every connection's address is checked when it is made (DNS rebinding), and the connection
goes to the address that was checked."""

from __future__ import annotations

import httpx
import pytest

from partnersync.connectors.http.guard import AddressGuardTransport, BlockedAddressError

pytestmark = pytest.mark.anyio


def _counting() -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"ok": True})

    return httpx.MockTransport(answer), seen


def _resolver(*answers: list[str]):  # type: ignore[no-untyped-def]
    queue = list(answers)

    async def resolve(host: str, port: int) -> list[str]:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return resolve


@pytest.mark.parametrize(
    "rebound",
    [
        ["127.0.0.1"],
        ["10.1.2.3"],
        ["169.254.169.254"],
        ["100.64.0.7"],
        ["::1"],
        ["fd00::5"],
        ["::ffff:127.0.0.1"],
        ["93.184.216.34", "192.168.1.10"],  # one bad answer among good ones
    ],
)
async def test_a_name_rebound_to_an_internal_address_reaches_nothing(rebound: list[str]) -> None:
    inner, seen = _counting()
    guard = AddressGuardTransport(inner, resolve=_resolver(rebound))
    async with httpx.AsyncClient(transport=guard) as client:
        with pytest.raises(BlockedAddressError, match="private or local address"):
            await client.get("https://shop.example/admin/api/2026-10/graphql.json")
    assert seen == []


async def test_literal_addresses_in_any_spelling_are_refused_without_dns() -> None:
    inner, seen = _counting()
    guard = AddressGuardTransport(inner, resolve=_resolver(["93.184.216.34"]))
    async with httpx.AsyncClient(transport=guard) as client:
        for url in ("http://127.0.0.1/", "http://[::1]/", "http://10.0.0.1/"):
            with pytest.raises(BlockedAddressError):
                await client.get(url)
    assert seen == []


async def test_a_public_name_is_pinned_to_the_address_checked() -> None:
    inner, seen = _counting()
    guard = AddressGuardTransport(inner, resolve=_resolver(["93.184.216.34"], ["127.0.0.1"]))
    async with httpx.AsyncClient(transport=guard) as client:
        response = await client.get("https://shop.example/path?x=1")
    assert response.status_code == 200
    (sent,) = seen
    assert sent.url.host == "93.184.216.34"  # not resolved again by the connection
    assert sent.url.path == "/path"
    assert sent.headers["host"] == "shop.example"
    assert sent.extensions["sni_hostname"] == "shop.example"  # the certificate is for the name
