"""The canonical model (DESIGN §3): one shape for every platform's products, stock and orders.

Money is Decimal plus an ISO-4217 currency, never float; every datetime is timezone-aware UTC;
every record carries its :class:`Origin` (account, platform, external id, the platform's
``updated_at``) so the sync engine can keep cursors without knowing platform field names.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator


def _ensure_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must carry a timezone")
    return value.astimezone(UTC)


UtcDateTime = Annotated[datetime, AfterValidator(_ensure_utc)]
"""A datetime that must be timezone-aware; stored normalised to UTC."""


class CanonicalModel(BaseModel):
    """Base of canonical records: strict about unknown fields, immutable once built."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class Money(CanonicalModel):
    """An exact amount in a currency."""

    amount: Decimal = Field(allow_inf_nan=False)
    currency: str = Field(pattern=r"^[A-Z]{3}$")

    @field_validator("amount", mode="before")
    @classmethod
    def _reject_float(cls, value: object) -> object:
        # A float has already lost precision; insist on strings, ints or Decimals.
        if isinstance(value, float):
            raise ValueError("money amounts must be given as decimal strings, not floats")
        return value


class Origin(CanonicalModel):
    """Where a canonical record came from."""

    account: str
    platform: str
    external_id: str
    updated_at: UtcDateTime | None = None
    version: str | None = None


class ProductStatus(enum.StrEnum):
    """Canonical product status."""

    ACTIVE = "active"
    DRAFT = "draft"
    ARCHIVED = "archived"
    UNLISTED = "unlisted"


class FinancialStatus(enum.StrEnum):
    """Canonical payment state of an order."""

    PENDING = "pending"
    AUTHORIZED = "authorized"
    PARTIALLY_PAID = "partially_paid"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    VOIDED = "voided"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class FulfillmentStatus(enum.StrEnum):
    """Canonical shipping state of an order."""

    UNFULFILLED = "unfulfilled"
    PARTIALLY_FULFILLED = "partially_fulfilled"
    FULFILLED = "fulfilled"
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"
    NOT_REQUIRED = "not_required"
    RESTOCKED = "restocked"
    UNKNOWN = "unknown"


class ProductOption(CanonicalModel):
    """A product option (e.g. Size) and its values."""

    name: str
    values: list[str] = Field(default_factory=list)


class Variant(CanonicalModel):
    """A sellable variant; SKU is the cross-platform join key."""

    external_id: str
    sku: str | None = None
    barcode: str | None = None
    title: str
    price: Money
    compare_at_price: Money | None = None
    position: int | None = None
    options: dict[str, str] = Field(default_factory=dict)


class Product(CanonicalModel):
    """A product with all its variants."""

    entity: ClassVar[str] = "products"

    origin: Origin
    title: str = Field(min_length=1)
    handle: str | None = None
    status: ProductStatus | None = None
    """``None``: the source does not say (a push then leaves the platform's status alone)."""
    vendor: str | None = None
    product_type: str | None = None
    description_html: str | None = None
    tags: list[str] = Field(default_factory=list)
    options: list[ProductOption] = Field(default_factory=list)
    variants: list[Variant] = Field(default_factory=list)
    created_at: UtcDateTime | None = None
    updated_at: UtcDateTime


class InventoryLevel(CanonicalModel):
    """Stock of one SKU at one location."""

    entity: ClassVar[str] = "inventory"

    origin: Origin
    sku: str = Field(min_length=1)
    location_id: str
    location_name: str | None = None
    available: int
    reserved: int | None = None
    incoming: int | None = None
    on_hand: int | None = None
    updated_at: UtcDateTime


class Address(CanonicalModel):
    """A postal address (PII)."""

    name: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    province_code: str | None = None
    country_code: str | None = None
    zip: str | None = None
    phone: str | None = None


class Customer(CanonicalModel):
    """The buyer (PII)."""

    external_id: str | None = None
    email: str | None = None
    phone: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class LineItem(CanonicalModel):
    """One line of an order."""

    external_id: str
    sku: str | None = None
    title: str
    quantity: int = Field(ge=0)
    unit_price: Money
    variant_id: str | None = None


class Fulfillment(CanonicalModel):
    """A shipment of (part of) an order."""

    external_id: str
    status: str
    carrier: str | None = None
    tracking_number: str | None = None
    tracking_url: str | None = None
    created_at: UtcDateTime | None = None


class Order(CanonicalModel):
    """A customer order from a channel."""

    entity: ClassVar[str] = "orders"

    origin: Origin
    number: str
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    financial_status: FinancialStatus
    fulfillment_status: FulfillmentStatus
    total: Money
    subtotal: Money | None = None
    total_tax: Money | None = None
    total_shipping: Money | None = None
    email: str | None = None
    phone: str | None = None
    customer: Customer | None = None
    shipping_address: Address | None = None
    billing_address: Address | None = None
    line_items: list[LineItem] = Field(default_factory=list)
    fulfillments: list[Fulfillment] = Field(default_factory=list)
    created_at: UtcDateTime
    updated_at: UtcDateTime
    cancelled_at: UtcDateTime | None = None


class ShipmentLine(CanonicalModel):
    """What a parcel carries of one order line: the SKU and how many units."""

    sku: str = Field(min_length=1)
    quantity: int = Field(gt=0)


class Shipment(CanonicalModel):
    """Tracking for an order, reported by the brand's warehouse, to be sent to the order's channel.

    ``order_ref`` is the order's number on its channel (e.g. ``#1001``) or its external id;
    ``channel`` names the account the order came from, when the warehouse knows it.
    """

    entity: ClassVar[str] = "fulfillments"

    origin: Origin
    order_ref: str = Field(min_length=1)
    channel: str | None = None
    carrier: str | None = None
    tracking_number: str = Field(min_length=1)
    tracking_url: str | None = None
    lines: list[ShipmentLine] = Field(default_factory=list)
    """What the parcel carries; empty: whatever is left to fulfil of the order."""
    updated_at: UtcDateTime


CanonicalRecord = Product | InventoryLevel | Order | Shipment
"""Any top-level canonical record."""

CANONICAL_MODELS: dict[str, type[Product] | type[InventoryLevel] | type[Order] | type[Shipment]] = {
    "products": Product,
    "inventory": InventoryLevel,
    "orders": Order,
    "fulfillments": Shipment,
}
"""Entity name → canonical model class."""
