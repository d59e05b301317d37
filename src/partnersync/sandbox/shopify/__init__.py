"""The Shopify sandbox: a loopback GraphQL Admin API executing against Shopify's real schema."""

from partnersync.sandbox.shopify.data import ShopifyData
from partnersync.sandbox.shopify.server import ShopifySandbox, load_schema, validate_document

__all__ = ["ShopifyData", "ShopifySandbox", "load_schema", "validate_document"]
