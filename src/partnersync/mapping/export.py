"""Export mappers: a canonical record → the platform's payload for a write (DESIGN §2, §3).

The push engine plans from canonical records; the target connector's spec declares an
``ExportMapper`` per entity it writes with a payload; the engine asks it for the payload and
hands that to the connector's writer, which only sends it. ``handles`` are the platform ids the
binder keeps for the record's parts (e.g. variant ids by SKU) and, under :data:`SELF`, for the
record itself, so an update addresses what the platform already has instead of re-creating it.

A minimal export mapper (this example runs as a test)::

    >>> from pydantic import BaseModel
    >>> class Thing(BaseModel):
    ...     name: str
    >>> class ThingExportMapper(ExportMapper[Thing]):
    ...     entity = "things"
    ...
    ...     def map(self, record, handles):
    ...         return {"title": record.name, "id": handles.get("self")}
    >>> ThingExportMapper(MapContext("acme", "demo")).map(Thing(name="Box"), {"self": "7"})
    {'title': 'Box', 'id': '7'}
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from partnersync.mapping.mapper import MapContext

RecordT = TypeVar("RecordT", bound=BaseModel)

SELF = "@self"
"""The key of the record's own platform id among ``handles`` (the other keys name parts)."""


class ExportMapper(ABC, Generic[RecordT]):
    """Builds one platform payload from one canonical record. Subclass per platform and entity."""

    entity: ClassVar[str]

    def __init__(self, context: MapContext) -> None:
        self.context = context

    @abstractmethod
    def map(self, record: RecordT, handles: Mapping[str, str]) -> dict[str, Any]:
        """The payload a write of ``record`` sends; ``handles``: the platform's ids of its
        parts, and of the record itself under :data:`SELF` when it exists there."""
