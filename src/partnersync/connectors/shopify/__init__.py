"""Shopify: GraphQL Admin API connector, mappers and sandbox, registered as ``SHOPIFY``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from partnersync.auth.oauth2 import RefreshingTokenAuth, ShopifyOAuth, TokenKeeper
from partnersync.auth.schemes import HeaderTokenAuth
from partnersync.connectors.base import ConnectorSpec, OAuthSpec, WebhookSpec
from partnersync.connectors.shopify.connector import DEFAULT_API_VERSION, ShopifyConnector
from partnersync.connectors.shopify.mappers import EXPORT_MAPPERS, IMPORT_MAPPERS


def access_token_auth(secrets: Mapping[str, str]) -> httpx.Auth:
    """``X-Shopify-Access-Token`` from the account's ``access_token`` secret."""
    return HeaderTokenAuth("X-Shopify-Access-Token", secrets["access_token"])


def refreshing_token_auth(secrets: Mapping[str, str], keeper: TokenKeeper) -> httpx.Auth:
    """``X-Shopify-Access-Token`` from the keeper (refreshed ahead of expiry and after a 401)."""
    return RefreshingTokenAuth("X-Shopify-Access-Token", keeper)


def _sandbox(*, fast: bool = False, **options: Any) -> Any:
    """A sandbox shop; ``fast`` scales its cost bucket up so tests never wait on pacing."""
    from partnersync.sandbox.shopify import ShopifySandbox

    if fast:
        options.setdefault("restore_rate", 1_000_000.0)
    return ShopifySandbox(**options)


SHOPIFY = ConnectorSpec(
    platform="shopify",
    connector=ShopifyConnector,
    mappers=IMPORT_MAPPERS,
    export_mappers=EXPORT_MAPPERS,
    auth=access_token_auth,
    secret_fields=("access_token",),
    sandbox=_sandbox,
    default_api_version=DEFAULT_API_VERSION,
    oauth=OAuthSpec(flow=ShopifyOAuth, refreshing_auth=refreshing_token_auth),
    webhooks=WebhookSpec(
        signature_header="X-Shopify-Hmac-Sha256",
        secret_fields=("webhook_secret", "client_secret"),
        id_headers=("X-Shopify-Event-Id", "X-Shopify-Webhook-Id"),
        topic_header="X-Shopify-Topic",
        timestamp_header="X-Shopify-Triggered-At",
        topics={
            "products/create": "products",
            "products/update": "products",
            "inventory_levels/update": "inventory",
            "inventory_items/update": "inventory",
            "orders/create": "orders",
            "orders/updated": "orders",
            "orders/cancelled": "orders",
            "orders/fulfilled": "orders",
            "orders/paid": "orders",
        },
    ),
    optional_secret_fields=("webhook_secret",),
)
"""The Shopify connector as the registry sees it."""

__all__ = ["SHOPIFY", "ShopifyConnector"]
