"""WooCommerce: REST API v3 connector, mappers and sandbox, registered as ``WOOCOMMERCE``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from partnersync.auth.oauth1 import ConsumerKeyAuth
from partnersync.connectors.base import ConnectorSpec, WebhookSpec
from partnersync.connectors.woocommerce.connector import WooCommerceConnector
from partnersync.connectors.woocommerce.mappers import EXPORT_MAPPERS, IMPORT_MAPPERS


def consumer_key_auth(secrets: Mapping[str, str]) -> httpx.Auth:
    """The consumer key pair: HTTP Basic over HTTPS, OAuth 1.0a signatures over plain HTTP."""
    return ConsumerKeyAuth(secrets["consumer_key"], secrets["consumer_secret"])


def _sandbox(
    *,
    fast: bool = False,
    token: str | None = None,
    restore_rate: float | None = None,
    **options: Any,
) -> Any:
    """A sandbox store. ``token`` (from ``sandbox serve``) makes the key pair ``ck_<token>`` /
    ``cs_<token>``; ``fast`` and ``restore_rate`` mean nothing here (nothing paces)."""
    from partnersync.sandbox.woocommerce import WooCommerceSandbox

    if token:
        options.setdefault("consumer_key", f"ck_{token}")
        options.setdefault("consumer_secret", f"cs_{token}")
    return WooCommerceSandbox(**options)


WOOCOMMERCE = ConnectorSpec(
    platform="woocommerce",
    connector=WooCommerceConnector,
    mappers=IMPORT_MAPPERS,
    export_mappers=EXPORT_MAPPERS,
    auth=consumer_key_auth,
    secret_fields=("consumer_key", "consumer_secret"),
    sandbox=_sandbox,
    webhooks=WebhookSpec(
        signature_header="X-WC-Webhook-Signature",
        secret_fields=("webhook_secret",),
        id_headers=("X-WC-Webhook-Delivery-ID",),
        topic_header="X-WC-Webhook-Topic",
        topics={
            "product.created": "products",
            "product.updated": "products",
            "order.created": "orders",
            "order.updated": "orders",
        },
    ),
    optional_secret_fields=("webhook_secret",),
    key_handover_path="/wc-auth/v1/authorize",
)
"""The WooCommerce connector as the registry sees it."""

__all__ = ["WOOCOMMERCE", "WooCommerceConnector"]
