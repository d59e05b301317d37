"""The GraphQL documents the Shopify connector sends (each validated against 2026-10 in a test)."""

from __future__ import annotations

SHOP = """
query Shop {
  shop { name currencyCode }
}
"""

_VARIANT_FIELDS = """
  id sku barcode title price compareAtPrice position updatedAt
  selectedOptions { name value }
  inventoryItem { id }
"""

PRODUCTS = (
    """
query Products($first: Int!, $after: String, $query: String, $variantsFirst: Int!) {
  products(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    pageInfo { hasNextPage endCursor }
    nodes {
      id title handle status vendor productType descriptionHtml tags createdAt updatedAt
      options { name values }
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

ORDERS = f"""
query Orders($first: Int!, $after: String, $query: String, $lineItemsFirst: Int!) {{
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{
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
      }}
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
}
"""Every document the connector may send, by operation name."""
