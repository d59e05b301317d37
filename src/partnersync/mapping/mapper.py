"""Mapper machinery in the OCA connector's style, typed and without magic (STYLE habit 7).

A mapper turns one platform record (parsed JSON) into one canonical pydantic record:

* ``direct`` is a table of 1:1 copies, ``Direct(source_path, target_field, converter)`` — data,
  so we know which source fields feed which target;
* each ``@mapping("target", ...)`` method computes one idea and returns those target fields;
* ``children`` map nested lists with another mapper;
* per-account :class:`FieldOverride` s (rename / constant / default / enum map) apply last;
* the result is validated by ``model``; any failure is a :class:`MappingError` naming account,
  entity, external id, field and reason.

A minimal mapper (this example runs as a test)::

    >>> from pydantic import BaseModel
    >>> class Thing(BaseModel):
    ...     name: str
    ...     size: int
    >>> class ThingMapper(Mapper[Thing]):
    ...     model = Thing
    ...     entity = "things"
    ...     direct = (Direct("title", "name"),)
    ...
    ...     @mapping("size")
    ...     def size(self, record: Record) -> dict[str, object]:
    ...         return {"size": len(record["parts"])}
    >>> ctx = MapContext(account="acme", platform="demo")
    >>> ThingMapper(ctx).map({"id": "1", "title": "Box", "parts": [1, 2]})
    Thing(name='Box', size=2)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from partnersync.errors import MappingError, MappingSpecError

Record = Mapping[str, Any]
ModelT = TypeVar("ModelT", bound=BaseModel)
MappingMethod = Callable[[Any, Record], dict[str, Any]]

_MISSING: Any = object()
_DATA_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError)


def get_path(record: Any, path: str) -> Any:
    """Read a dotted path (``totalPriceSet.shopMoney.amount``); a missing step gives ``None``."""
    return _walk(record, path.split("."))


def _walk(record: Any, steps: Sequence[str]) -> Any:
    value = record
    for step in steps:
        # Platform JSON is plain dicts: the exact type check is the fast path.
        if type(value) is not dict and not isinstance(value, Mapping):
            return None
        value = value.get(step)
    return value


_METHODS: dict[type, tuple[tuple[str, tuple[str, ...]], ...]] = {}


def _mapping_methods(mapper: type) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(attribute name, target fields) of a mapper class's computed-field methods, found once
    per class."""
    found = _METHODS.get(mapper)
    if found is None:
        found = tuple(
            (name, targets)
            for name in dir(mapper)
            if (targets := getattr(getattr(mapper, name), "__mapping_targets__", None)) is not None
        )
        _METHODS[mapper] = found
    return found


@dataclass(frozen=True)
class Direct:
    """A 1:1 copy from a source path to a target field, through an optional converter."""

    source: str
    target: str
    convert: Callable[[Any], Any] | None = None


@dataclass(frozen=True)
class Child:
    """A nested list: each item at ``source`` is mapped by ``mapper`` into ``target``."""

    source: str
    target: str
    mapper: type[Mapper[Any]]


def mapping(*targets: str) -> Callable[[MappingMethod], MappingMethod]:
    """Mark a mapper method as computing ``targets``; it returns a dict of exactly those fields."""

    def decorate(method: MappingMethod) -> MappingMethod:
        method.__mapping_targets__ = targets  # type: ignore[attr-defined]
        return method

    return decorate


@dataclass(frozen=True)
class MapContext:
    """Facts a mapper needs beyond the record: who it maps for, and account-level settings."""

    account: str
    platform: str
    settings: Mapping[str, Any] = field(default_factory=dict)


class FieldOverride(BaseModel):
    """A per-account adjustment of one target field, given as data in the project file.

    * ``source``: read the raw value from this dotted path instead;
    * ``enum_map``: platform value → canonical value, used instead of the converter on a hit;
    * ``default``: used when the result is missing or ``None``;
    * ``constant``: always this value (excludes the others).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str | None = None
    constant: Any = None
    default: Any = None
    enum_map: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _constant_alone(self) -> FieldOverride:
        if self.constant is not None and (self.source or self.default is not None or self.enum_map):
            raise ValueError("'constant' cannot be combined with source, default or enum_map")
        return self


class Mapper(Generic[ModelT]):
    """Maps one platform record to one ``model`` instance. Subclass per platform and entity."""

    model: ClassVar[type[BaseModel]]
    entity: ClassVar[str]
    direct: ClassVar[Sequence[Direct]] = ()
    children: ClassVar[Sequence[Child]] = ()
    external_id_path: ClassVar[str] = "id"

    def __init__(
        self, context: MapContext, overrides: Mapping[str, FieldOverride] | None = None
    ) -> None:
        self.context = context
        self.overrides = dict(overrides or {})
        # Worked out once per mapper, not per record: a page maps hundreds of records.
        self._methods = [
            (targets, getattr(self, name)) for name, targets in _mapping_methods(type(self))
        ]
        self._copies = [
            (copy.target, tuple(copy.source.split(".")), copy.convert) for copy in self.direct
        ]
        self._converters = {copy.target: copy.convert for copy in self.direct}
        self._children = [
            (child, tuple(child.source.split(".")), child.mapper(context))
            for child in self.children
        ]
        unknown = sorted(set(self.overrides) - set(self.model.model_fields))
        if unknown:
            raise MappingSpecError(
                f"{context.account}/{self.entity}: override of unknown field(s) {unknown}; "
                f"known fields: {sorted(self.model.model_fields)}"
            )

    # -- introspection ---------------------------------------------------------------------
    @classmethod
    def source_fields(cls) -> dict[str, list[str]]:
        """Target field → source paths that feed it (``direct`` copies and children)."""
        sources: dict[str, list[str]] = {}
        for copy in cls.direct:
            sources.setdefault(copy.target, []).append(copy.source)
        for child in cls.children:
            sources.setdefault(child.target, []).append(child.source)
        return sources

    # -- mapping ---------------------------------------------------------------------------
    def external_id(self, record: Record) -> str | None:
        """The record's id on the platform, as a string."""
        value = get_path(record, self.external_id_path)
        return None if value is None else str(value)

    def _fail(self, record: Record, field_name: str, reason: str) -> MappingError:
        return MappingError(
            account=self.context.account,
            entity=self.entity,
            external_id=self.external_id(record),
            field=field_name,
            reason=reason,
            mapper=type(self).__name__,
        )

    def map_fields(self, record: Record) -> dict[str, Any]:
        """Compute the target fields without validating them (children included)."""
        if not isinstance(record, Mapping):
            raise MappingError(
                account=self.context.account,
                entity=self.entity,
                external_id=None,
                field="<record>",
                reason=f"expected a JSON object, got {type(record).__name__}",
                mapper=type(self).__name__,
            )
        out: dict[str, Any] = {}
        for target, steps, convert in self._copies:
            out[target] = self._convert(record, target, _walk(record, steps), convert)
        for targets, method in self._methods:
            try:
                values = method(record)
            except MappingError:
                raise
            except _DATA_ERRORS as exc:
                # Whatever shape the platform sent, a computed field fails as a mapping error.
                raise self._fail(record, "/".join(targets), _reason(exc)) from exc
            out.update(values)
        for child, steps, child_mapper in self._children:
            items = _walk(record, steps)
            if items is None:
                items = []
            if not isinstance(items, list):
                raise self._fail(record, child.target, f"expected a list at {child.source!r}")
            mapped = []
            for index, item in enumerate(items):
                try:
                    mapped.append(child_mapper.map_fields(item))
                except MappingError as exc:
                    raise self._fail(
                        record, f"{child.target}[{index}].{exc.field}", exc.reason
                    ) from exc
            out[child.target] = mapped
        for target, override in self.overrides.items():
            out[target] = self._apply_override(record, target, override, out.get(target))
        return out

    def _convert(
        self, record: Record, target: str, raw: Any, convert: Callable[[Any], Any] | None
    ) -> Any:
        if raw is None or convert is None:
            return raw
        try:
            return convert(raw)
        except _DATA_ERRORS as exc:
            raise self._fail(record, target, _reason(exc)) from exc

    def _apply_override(
        self, record: Record, target: str, override: FieldOverride, current: Any
    ) -> Any:
        if override.constant is not None:
            return override.constant
        value = current
        raw = get_path(record, override.source) if override.source else _MISSING
        if override.enum_map:
            # The map is keyed by the platform's own spelling: look at the raw source value.
            direct = next((d for d in self.direct if d.target == target), None)
            key = raw
            if key is _MISSING:
                key = get_path(record, direct.source) if direct else current
            key = getattr(key, "value", key)
            if isinstance(key, str) and key in override.enum_map:
                return override.enum_map[key]
        if raw is not _MISSING:
            value = self._convert(record, target, raw, self._converters.get(target))
        if value is None and override.default is not None:
            value = override.default
        return value

    def map(self, record: Record) -> ModelT:
        """Map and validate one record; raises :class:`MappingError` on any failure."""
        fields = self.map_fields(record)
        try:
            return self.model.model_validate(fields)  # type: ignore[return-value]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "<record>"
            raise self._fail(record, where, first["msg"]) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc)
    return text if text else type(exc).__name__
