"""Pushes: hub → platforms, one exporter per entity (see :mod:`.engine`)."""

from partnersync.sync.push import fulfillments, inventory, orders, products
from partnersync.sync.push.engine import EXPORTERS, Exporter, PushEngine
from partnersync.sync.push.plan import (
    Conflict,
    FieldChange,
    MassChangeError,
    PlannedWrite,
    Problem,
    PushOptions,
    PushPlan,
    PushSummary,
    pushed_quantity,
)

TARGET_STATE = {name: cls.reads for name, cls in EXPORTERS.items()}
"""Entity pushed → entity pulled from the target to know its current state (None: nothing)."""

__all__ = [
    "EXPORTERS",
    "TARGET_STATE",
    "Conflict",
    "Exporter",
    "FieldChange",
    "MassChangeError",
    "PlannedWrite",
    "Problem",
    "PushEngine",
    "PushOptions",
    "PushPlan",
    "PushSummary",
    "fulfillments",
    "inventory",
    "orders",
    "products",
    "pushed_quantity",
]
