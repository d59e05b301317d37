"""Taobao/Tmall: TOP connector, mappers and sandbox, registered as ``TAOBAO``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from partnersync.auth.oauth2 import TAOBAO_OAUTH_URL, TaobaoOAuth, TokenKeeper
from partnersync.auth.top import RefreshingTopSignAuth, TopSignAuth
from partnersync.connectors.base import ConnectorSpec, OAuthSpec
from partnersync.connectors.taobao.connector import TaobaoConnector
from partnersync.connectors.taobao.mappers import IMPORT_MAPPERS


def top_auth(secrets: Mapping[str, str]) -> httpx.Auth:
    """The app key and secret sign every call; the seller's session key authorises it."""
    return TopSignAuth(
        secrets["app_key"],
        secrets["app_secret"],
        secrets["session"],
        sign_method=secrets.get("sign_method") or "hmac-sha256",
    )


def refreshing_top_auth(secrets: Mapping[str, str], keeper: TokenKeeper) -> httpx.Auth:
    """TOP signing with the seller's session key from the keeper (an OAuth-connected seller)."""
    return RefreshingTopSignAuth(
        secrets["app_key"],
        secrets["app_secret"],
        keeper,
        sign_method=secrets.get("sign_method") or "hmac-sha256",
    )


def _sandbox(
    *,
    fast: bool = False,
    token: str | None = None,
    restore_rate: float | None = None,
    **options: Any,
) -> Any:
    """A sandbox gateway (``token``, from ``sandbox serve``, becomes the session key)."""
    from partnersync.sandbox.taobao import TaobaoSandbox

    if token:
        options.setdefault("session", token)
    options.pop("products", None)
    options.pop("orders", None)
    return TaobaoSandbox(**options)


TAOBAO = ConnectorSpec(
    platform="taobao",
    connector=TaobaoConnector,
    mappers=IMPORT_MAPPERS,
    auth=top_auth,
    secret_fields=("app_key", "app_secret", "session"),
    sandbox=_sandbox,
    oauth=OAuthSpec(
        flow=TaobaoOAuth,
        refreshing_auth=refreshing_top_auth,
        field_names={
            "client_id": "app_key",
            "client_secret": "app_secret",
            "access_token": "session",
        },
        oauth_url=TAOBAO_OAUTH_URL,
    ),
)
"""The Taobao/Tmall connector as the registry sees it."""

__all__ = ["TAOBAO", "TaobaoConnector"]
