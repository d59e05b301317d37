"""Taobao/Tmall sellers connected through TOP's OAuth (the session-key flow) against the sandbox
gateway's own ``/authorize`` and ``/token``: two sellers side by side, each pulling with its
own session key; a session the platform ended is refreshed once and the call signed again; a
seller who refuses leaves nothing stored."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from partnersync.errors import AuthenticationError
from partnersync.sandbox.taobao import TaobaoSandbox
from partnersync.service import Partnersync
from tests.conftest import make_service, new_vault

pytestmark = pytest.mark.anyio

REDIRECT = "http://127.0.0.1:9/callback"  # never reached: the test reads the redirect itself


@pytest.fixture
def gateway() -> Iterator[TaobaoSandbox]:
    # The gateway's fixed session key is not handed to anyone: only OAuth-issued keys work.
    with TaobaoSandbox(session="never-given-out", items=12, trades=8) as sandbox:
        yield sandbox


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Partnersync]:
    service = make_service(tmp_path / "project", new_vault())
    yield service
    service.close()


async def _approve(authorize_url: str) -> Mapping[str, str] | None:
    """The seller approves at Taobao; the parameters the redirect carries back."""
    async with httpx.AsyncClient() as browser:
        answer = await browser.get(authorize_url)
    assert answer.status_code == 302
    return dict(parse_qsl(urlsplit(answer.headers["location"]).query))


async def _connect(service: Partnersync, gateway: TaobaoSandbox, name: str) -> None:
    await service.connect_account(
        name=name,
        platform="taobao",
        base_url=gateway.url,
        oauth_url=gateway.url,
        client_id=gateway.app_key,
        client_secret=gateway.app_secret,
        scopes="",
        redirect_uri=REDIRECT,
        receive=_approve,
        options={"qps": 1000},
        allow_loopback=True,
    )


async def test_two_sellers_connect_and_pull_with_their_own_session_keys(
    service: Partnersync, gateway: TaobaoSandbox
) -> None:
    await _connect(service, gateway, "tb-one")
    await _connect(service, gateway, "tb-two")
    assert gateway.oauth.exchanges == 2
    one, two = (service.store.accounts.secrets(n) for n in ("tb-one", "tb-two"))
    assert one["session"] != two["session"]
    assert one["app_key"] == gateway.app_key
    assert {"refresh_token", "expires_at"} <= set(one)
    assert service.account("tb-one")["options"]["oauth_url"] == gateway.url
    for name in ("tb-one", "tb-two"):
        summary = await service.pull(name, "products")
        assert summary.status == "succeeded"
        assert summary.progress.fetched == 12


async def test_a_session_the_platform_ended_is_refreshed_once_and_the_call_made_again(
    service: Partnersync, gateway: TaobaoSandbox
) -> None:
    await _connect(service, gateway, "tb")
    before = service.store.accounts.secrets("tb")
    gateway.oauth.expire_all()  # the key still looks fresh to us: TOP answers code 27
    summary = await service.pull("tb", "products")
    assert summary.status == "succeeded"
    assert summary.progress.fetched == 12
    assert gateway.oauth.refreshes == 1
    after = service.store.accounts.secrets("tb")
    assert after["session"] != before["session"]
    assert after["refresh_token"] != before["refresh_token"]
    again = make_service(service.project.root, service.vault)  # another process reads the new key
    assert (await again.pull("tb", "orders")).status == "succeeded"
    again.close()
    assert gateway.oauth.refreshes == 1


async def test_a_seller_who_refuses_leaves_nothing_stored(
    service: Partnersync, gateway: TaobaoSandbox
) -> None:
    gateway.oauth.deny = True
    with pytest.raises(AuthenticationError, match="access_denied"):
        await _connect(service, gateway, "tb")
    assert service.accounts() == []
    assert gateway.oauth.exchanges == 0
