"""Taobao/Tmall: TOP connector, mappers and sandbox, registered as ``TAOBAO``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from partnersync.auth.top import TopSignAuth
from partnersync.connectors.base import ConnectorSpec
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
)
"""The Taobao/Tmall connector as the registry sees it."""

__all__ = ["TAOBAO", "TaobaoConnector"]
