"""The GraphQL documents the Shopify connector sends (each validated against 2026-10 in a test)."""

from __future__ import annotations

import json

SHOP = """
query Shop {
  shop { name currencyCode }
}
"""

_VARIANT_FIELDS = """
  id sku barcode title price compareAtPrice position
  selectedOptions { name value }
"""

_PRODUCT_FIELDS = """
      id title handle status vendor productType descriptionHtml tags createdAt updatedAt
      options { name values }"""

PRODUCTS = (
    """
query Products($first: Int!, $after: String, $query: String, $variantsFirst: Int!) {
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {"""
    + _PRODUCT_FIELDS
    + """
      variants(first: $variantsFirst) {
        pageInfo { hasNextPage endCursor }
        nodes {"""
    + _VARIANT_FIELDS
    + """}
      }
    }
  }
}
"""
)

PRODUCT_VARIANTS = (
    """
query ProductVariants($id: ID!, $first: Int!, $after: String) {
  node(id: $id) {
    ... on Product {
      variants(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes {"""
    + _VARIANT_FIELDS
    + """}
      }
    }
  }
}
"""
)

_LEVEL_FIELDS = """
  id updatedAt
  location { id name }
  quantities(names: ["available", "committed", "incoming", "on_hand"]) { name quantity }
"""

READ_ITEM_LEVELS = (
    """
query ReadItemLevels($id: ID!, $first: Int!) {
  node(id: $id) {
    ... on InventoryItem {
      id sku updatedAt
      inventoryLevels(first: $first) {
        nodes {"""
    + _LEVEL_FIELDS
    + """}
      }
    }
  }
}
"""
)

INVENTORY_ITEMS = (
    """
query InventoryItems($first: Int!, $after: String, $query: String, $levelsFirst: Int!) {
  inventoryItems(first: $first, after: $after, query: $query) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id sku updatedAt
      inventoryLevels(first: $levelsFirst) {
        pageInfo { hasNextPage endCursor }
        nodes {"""
    + _LEVEL_FIELDS
    + """}
      }
    }
  }
}
"""
)

INVENTORY_ITEM_LEVELS = (
    """
query InventoryItemLevels($id: ID!, $first: Int!, $after: String) {
  node(id: $id) {
    ... on InventoryItem {
      inventoryLevels(first: $first, after: $after) {
        pageInfo { hasNextPage endCursor }
        nodes {"""
    + _LEVEL_FIELDS
    + """}
      }
    }
  }
}
"""
)

_MONEY = "shopMoney { amount currencyCode }"
_ADDRESS = "name company address1 address2 city provinceCode countryCodeV2 zip phone"
_LINE_ITEM_FIELDS = f"""
  id sku title quantity
  variant {{ id }}
  originalUnitPriceSet {{ {_MONEY} }}
"""

_ORDER_FIELDS = f"""
      id name email phone createdAt updatedAt cancelledAt currencyCode
      displayFinancialStatus displayFulfillmentStatus
      totalPriceSet {{ {_MONEY} }}
      subtotalPriceSet {{ {_MONEY} }}
      totalTaxSet {{ {_MONEY} }}
      totalShippingPriceSet {{ {_MONEY} }}
      customer {{ id email phone firstName lastName }}
      shippingAddress {{ {_ADDRESS} }}
      billingAddress {{ {_ADDRESS} }}
      fulfillments(first: 5) {{
        id status createdAt
        trackingInfo {{ company number url }}
      }}"""

ORDERS = f"""
query Orders($first: Int!, $after: String, $query: String, $lineItemsFirst: Int!) {{
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{{_ORDER_FIELDS}
      lineItems(first: $lineItemsFirst) {{
        pageInfo {{ hasNextPage endCursor }}
        nodes {{{_LINE_ITEM_FIELDS}}}
      }}
    }}
  }}
}}
"""

ORDER_LINE_ITEMS = f"""
query OrderLineItems($id: ID!, $first: Int!, $after: String) {{
  node(id: $id) {{
    ... on Order {{
      lineItems(first: $first, after: $after) {{
        pageInfo {{ hasNextPage endCursor }}
        nodes {{{_LINE_ITEM_FIELDS}}}
      }}
    }}
  }}
}}
"""

SET_INVENTORY = """
mutation SetInventory($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id changes { name delta quantityAfterChange } }
    userErrors { field code message }
  }
}
"""

_PRODUCT_IDS = "id handle variants(first: 250) { nodes { id sku inventoryItem { id } } }"

PRODUCT_SET = f"""
mutation ProductSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers) {{
  productSet(input: $input, identifier: $identifier, synchronous: true) {{
    product {{ {_PRODUCT_IDS} }}
    userErrors {{ field code message }}
  }}
}}
"""

PRODUCT_BY_HANDLE = f"""
query ProductByHandle($handle: String!) {{
  productByIdentifier(identifier: {{handle: $handle}}) {{ {_PRODUCT_IDS} }}
}}
"""

ORDER_FULFILLMENT_STATE = """
query OrderFulfillmentState($id: ID!) {
  order(id: $id) {
    id
    fulfillmentOrders(first: 5) {
      nodes { id status lineItems(first: 100) { nodes { id sku remainingQuantity } } }
    }
    fulfillments(first: 20) { id trackingInfo { number } }
  }
}
"""

FULFILLMENT_CREATE = """
mutation FulfillmentCreate($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status trackingInfo { company number url } }
    userErrors { field message }
  }
}
"""

BULK_RUN = """
mutation BulkRun($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: true) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""

BULK_STATUS = """
query BulkStatus($id: ID!) {
  bulkOperation(id: $id) {
    id status errorCode objectCount rootObjectCount url partialDataUrl createdAt
  }
}
"""

COUNTS = {
    "products": "query Count($query: String) { productsCount(query: $query) { count precision } }",
    "orders": "query Count($query: String) { ordersCount(query: $query) { count precision } }",
    # No inventoryItemsCount: every variant has one inventory item.
    "inventory": (
        "query Count($query: String) { productVariantsCount(query: $query) { count precision } }"
    ),
}
"""A cheap count of what a pull would read (it decides between paging and a bulk operation)."""

_BULK_SHAPES = {
    "products": ("products", _PRODUCT_FIELDS, "variants", _VARIANT_FIELDS),
    "inventory": ("inventoryItems", "id sku updatedAt", "inventoryLevels", _LEVEL_FIELDS),
    "orders": ("orders", _ORDER_FIELDS, "lineItems", _LINE_ITEM_FIELDS),
}


def bulk_query(entity: str, search: str | None) -> str:
    """The bulk operation query for ``entity`` (the same fields as the paged query, no page
    sizes; the search inlined as a string literal, as a bulk query takes no variables)."""
    root, fields, nested, nested_fields = _BULK_SHAPES[entity]
    arguments = f"(query: {json.dumps(search)})" if search else ""
    return (
        f"{{ {root}{arguments} {{ edges {{ node {{ {fields}\n"
        f"  {nested} {{ edges {{ node {{ {nested_fields} }} }} }} }} }} }} }}"
    )


ALL_DOCUMENTS = {
    "Shop": SHOP,
    "Products": PRODUCTS,
    "ProductVariants": PRODUCT_VARIANTS,
    "InventoryItems": INVENTORY_ITEMS,
    "InventoryItemLevels": INVENTORY_ITEM_LEVELS,
    "Orders": ORDERS,
    "OrderLineItems": ORDER_LINE_ITEMS,
    "SetInventory": SET_INVENTORY,
    "ReadItemLevels": READ_ITEM_LEVELS,
    "ProductSet": PRODUCT_SET,
    "ProductByHandle": PRODUCT_BY_HANDLE,
    "OrderFulfillmentState": ORDER_FULFILLMENT_STATE,
    "FulfillmentCreate": FULFILLMENT_CREATE,
    "BulkRun": BULK_RUN,
    "BulkStatus": BULK_STATUS,
    **{f"Count{entity.title()}": document for entity, document in COUNTS.items()},
    **{
        f"Bulk{entity.title()}": bulk_query(entity, "updated_at:>='2026-01-01T00:00:00Z'")
        for entity in _BULK_SHAPES
    },
}
"""Every document the connector may send, by operation name."""
