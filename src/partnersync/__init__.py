"""partnersync: keep a brand's products, inventory and orders in step with partner platforms."""

__version__ = "0.1.0"
