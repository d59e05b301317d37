"""The connect page's defences, request by request (the browser test walks the happy path):
security headers, sign-in required, CSRF and foreign origins refused, no session fixation,
sign-out ending the session for good, a throttled password guesser, OAuth callbacks bound to
the session that started them and claimed once, two shops connected side by side keeping their
own tokens, and no secret in any page."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from partnersync.sandbox.shopify import ShopifySandbox
from partnersync.service import Partnersync
from partnersync.web import create_app
from tests.conftest import SHOP_TOKEN, make_service, new_vault

pytestmark = pytest.mark.anyio

APP_ID, APP_SECRET = "sandbox-client-id", "sandbox-client-secret"
ADMIN, PASSWORD = "ops", "a long enough password"
BASE = "http://partnersync.test"


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Partnersync:
    monkeypatch.setenv("APP_SECRET", APP_SECRET)
    service = make_service(
        tmp_path / "project",
        new_vault(),
        apps={"shopify": {"client_id": APP_ID, "client_secret_env": "APP_SECRET"}},
    )
    service.store.web.set_admin(ADMIN, PASSWORD)
    return service


def _client(service: Partnersync) -> httpx.AsyncClient:
    app = create_app(service, allow_loopback=True)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)


@pytest.fixture
async def browser(service: Partnersync) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(service) as client:
        yield client


def _csrf(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, page.text
    return found.group(1)


async def _sign_in(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    page = await client.get("/login")
    return await client.post(
        "/login",
        data={"csrf": _csrf(page), "username": ADMIN, "password": password},
        headers={"Origin": BASE},
    )


async def _start_oauth(client: httpx.AsyncClient, name: str, shop: ShopifySandbox) -> str:
    """Start connecting ``name`` to ``shop``; the authorize URL the page links to."""
    page = await client.get("/connect/shopify")
    started = await client.post(
        "/connect/shopify",
        data={"csrf": _csrf(page), "method": "oauth", "name": name, "url": shop.url},
    )
    assert started.status_code == 200, started.text
    link = re.search(r'id="continue" href="([^"]+)"', started.text)
    assert link is not None
    return link.group(1).replace("&amp;", "&")


async def _approve(authorize_url: str) -> str:
    """The brand approves at the shop; the path and query the shop sends the browser back to."""
    async with httpx.AsyncClient() as outside:
        answer = await outside.get(authorize_url)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    return f"{back.path}?{back.query}"


async def test_every_answer_carries_the_security_headers(browser: httpx.AsyncClient) -> None:
    login = await browser.get("/login")
    for answer in (
        login,
        await browser.post("/webhooks/shopify/nobody", content=b"{}"),
        await browser.get("/static/style.css"),
    ):
        headers = answer.headers
        assert "default-src 'none'" in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "same-origin"
    cookie = login.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert login.headers["cache-control"] == "no-store"
    assert "<script" not in login.text


async def test_nothing_without_signing_in_and_no_form_without_its_token(
    browser: httpx.AsyncClient, service: Partnersync
) -> None:
    for path in ("/", "/connect", "/connect/shopify"):
        answer = await browser.get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/login"
    assert (await _sign_in(browser)).status_code == 303
    # Signed in, a form posted without its token, with another's, or from another site fails.
    page = await browser.get("/connect/shopify")
    fields = {"method": "keys", "name": "x", "url": "http://127.0.0.1:1"}
    for data, headers in (
        (fields, {}),
        ({**fields, "csrf": "forged"}, {}),
        ({**fields, "csrf": _csrf(page)}, {"Origin": "https://evil.example"}),
    ):
        refused = await browser.post("/connect/shopify", data=data, headers=headers)
        assert refused.status_code == 403
    assert service.accounts() == []


async def test_sign_in_replaces_the_session_and_sign_out_ends_it(
    browser: httpx.AsyncClient, service: Partnersync
) -> None:
    await browser.get("/login")
    anonymous = browser.cookies["partnersync_session"]
    await _sign_in(browser)
    signed_in = browser.cookies["partnersync_session"]
    assert signed_in != anonymous  # a cookie planted before sign-in opens nothing after
    assert service.store.web.session(anonymous) is None
    assert service.store.web.sessions_of(ADMIN) == 1
    page = await browser.get("/")
    assert page.status_code == 200
    out = await browser.post("/logout", data={"csrf": _csrf(page)})
    assert out.headers["location"] == "/login"
    assert service.store.web.sessions_of(ADMIN) == 0
    async with _client(service) as thief:  # the old cookie, replayed, is worth nothing
        thief.cookies.set("partnersync_session", signed_in)
        assert (await thief.get("/")).status_code == 303


async def test_a_password_guesser_is_locked_out(browser: httpx.AsyncClient) -> None:
    for _ in range(5):
        assert (await _sign_in(browser, "guess")).status_code == 401
    locked = await _sign_in(browser)  # even the right password, for the rest of the window
    assert locked.status_code == 429


async def test_two_shops_connected_side_by_side_keep_their_own_tokens(
    browser: httpx.AsyncClient, service: Partnersync
) -> None:
    with (
        ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0) as a,
        ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0) as b,
    ):
        await _sign_in(browser)
        # Both started before either returns: each callback completes its own connection.
        to_a = await _start_oauth(browser, "shop-a", a)
        to_b = await _start_oauth(browser, "shop-b", b)
        back_b, back_a = await _approve(to_b), await _approve(to_a)
        for back, name in ((back_b, "shop-b"), (back_a, "shop-a")):
            landed = await browser.get(back)
            assert landed.status_code == 303, landed.text
            assert landed.headers["location"] == f"/?connected={name}"
        a_secrets = service.store.accounts.secrets("shop-a")
        b_secrets = service.store.accounts.secrets("shop-b")
        assert a.oauth.accepts(a_secrets["access_token"])
        assert b.oauth.accepts(b_secrets["access_token"])
        assert not a.oauth.accepts(b_secrets["access_token"])
        assert service.account("shop-a")["base_url"] == a.url
        assert service.account("shop-b")["base_url"] == b.url

        page = await browser.get("/")
        assert page.text.count('data-health="healthy"') == 2
        for stored in (a_secrets, b_secrets):
            for field in ("access_token", "refresh_token", "client_secret"):
                assert stored[field] not in page.text


async def test_an_oauth_callback_lands_only_in_the_session_that_started_it_and_only_once(
    browser: httpx.AsyncClient, service: Partnersync
) -> None:
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0) as shop:
        await _sign_in(browser)
        back = await _approve(await _start_oauth(browser, "acme", shop))
        async with _client(service) as other:  # another admin's session, same callback
            await _sign_in(other)
            stolen = await other.get(back)
            assert stolen.status_code == 400
            assert "another session" in stolen.text or "no connection" in stolen.text
        assert service.accounts() == []
        assert shop.oauth.exchanges == 0

        back = await _approve(await _start_oauth(browser, "acme", shop))
        forged = back.replace("code=", "code=0")
        assert (await browser.get(forged)).status_code == 400  # hmac no longer matches
        assert service.accounts() == []

        back = await _approve(await _start_oauth(browser, "acme", shop))
        assert (await browser.get(back)).status_code == 303
        assert (await browser.get(back)).status_code == 400  # a replay finds nothing waiting
        assert shop.oauth.exchanges == 1


async def test_pasted_keys_are_stored_checked_and_never_shown(
    browser: httpx.AsyncClient, service: Partnersync
) -> None:
    with ShopifySandbox(token=SHOP_TOKEN, restore_rate=1_000_000.0) as shop:
        await _sign_in(browser)
        page = await browser.get("/connect/shopify")
        assert 'type="password"' in page.text
        for token, name in ((SHOP_TOKEN, "good"), ("shpat_wrong_token_000000", "wrong")):
            done = await browser.post(
                "/connect/shopify",
                data={
                    "csrf": _csrf(page),
                    "method": "keys",
                    "name": name,
                    "url": shop.url,
                    "secret_access_token": token,
                },
            )
            assert done.status_code == 303, done.text
        accounts = await browser.get("/")
        assert re.search(r'id="account-good" data-health="healthy"', accounts.text)
        assert re.search(r'id="account-wrong" data-health="failing"', accounts.text)
        assert SHOP_TOKEN not in accounts.text
        assert "shpat_wrong_token_000000" not in accounts.text
        # A name that is not one, and a URL that is not the platform's, are refused plainly.
        bad = await browser.post(
            "/connect/shopify",
            data={
                "csrf": _csrf(page),
                "method": "keys",
                "name": "<script>alert(1)</script>",
                "url": shop.url,
                "secret_access_token": SHOP_TOKEN,
            },
        )
        assert bad.status_code == 400
        assert "<script>alert" not in bad.text
        inside = await browser.post(
            "/connect/shopify",
            data={
                "csrf": _csrf(page),
                "method": "oauth",
                "name": "inside",
                "url": "file:///etc/passwd",
            },
        )
        assert inside.status_code == 400
        assert {a["name"] for a in service.accounts()} == {"good", "wrong"}
