"""A faster way to answer the sandbox shop's read queries, equal in result to graphql-core's.

graphql-core resolves every field through layers of generic machinery (about 10 µs a field); a
bulk operation over a 20,000-product shop resolves about a million fields, so the sandbox spent
more CPU than the client it serves, and benchmarks measured the sandbox (issue 7). Here a query
runs over the same resolver views: the fields of each selection set are collected, their
definitions found and their arguments coerced once per request (by graphql-core's own
``get_argument_values``); a field resolves as graphql-core's default resolver does (the source
mapping's key, called with the field's info and arguments when it is callable), a non-null field
the source lacks from the ``fill`` function given (as the sandbox's ``filling_resolver`` does);
and values are completed by their schema type — lists, scalars and enums serialized by the type,
abstract types by ``__typename``.

Anything this does not handle the way graphql-core does — a mutation, a directive, a field that
errors, a non-null field resolving to null — raises :class:`Unsupported`, and the caller runs
graphql-core instead (whose errors and partial data are then the answer). A test holds the two
to the same result for every query the connector sends and more."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
)
from graphql.execution.values import get_argument_values, get_variable_values

Fill = Callable[[Any, Any], Any]
"""(source, info) → the value of a non-null field the source lacks."""


_TEXT_SCALARS = frozenset(
    {"String", "ID", "DateTime", "Date", "HTML", "URL", "Decimal", "Money", "FormattedString"}
)
"""Scalars that serialize a ``str`` as itself (Shopify's custom scalars pass values through)."""


class Unsupported(Exception):
    """The query needs graphql-core (see the module doc)."""


_Chain = tuple[Any, str] | None
"""A response path as nested ``(parent chain, key)`` pairs (cheap to make for every field)."""


class _ResponsePath:
    """The response path of a field, as graphql-core's ``info.path`` offers it."""

    __slots__ = ("chain",)

    def __init__(self, chain: _Chain) -> None:
        self.chain = chain

    def as_list(self) -> list[str]:
        """The keys from the root to this field."""
        keys: list[str] = []
        chain = self.chain
        while chain is not None:
            chain, key = chain
            keys.append(key)
        return keys[::-1]


class _Info:
    """The parts of graphql-core's ``GraphQLResolveInfo`` the sandbox's resolvers read."""

    __slots__ = ("field_name", "path", "return_type", "schema")

    def __init__(
        self, field_name: str, return_type: Any, schema: GraphQLSchema, path: _ResponsePath
    ) -> None:
        self.field_name = field_name
        self.return_type = return_type
        self.schema = schema
        self.path = path


class _Field:
    """One response key of a selection on one object type, planned once per request."""

    __slots__ = (
        "arguments",
        "child",
        "child_type",
        "key",
        "name",
        "non_null",
        "plain",
        "return_type",
        "shape",
        "subs",
    )

    def __init__(
        self,
        key: str,
        name: str,
        return_type: Any,
        arguments: dict[str, Any],
        subs: tuple[SelectionSetNode, ...],
    ) -> None:
        self.key = key
        self.name = name
        self.return_type = return_type
        self.arguments = arguments
        self.subs = subs
        self.non_null = isinstance(return_type, GraphQLNonNull)
        self.plain = _plain_text(return_type)
        self.shape = _OTHER
        self.child: list[_Field] = []
        self.child_type = ""


_OTHER, _OBJECT, _OBJECT_LIST = 0, 1, 2
"""How a field's value completes: by :meth:`_Executor.complete`, as one object of a known type
(its plan made in advance), or as a list of such objects."""


def _plain_text(kind: Any) -> Any:
    """For a field of type ``kind``: which stored ``str`` values serialize to themselves (True:
    any, for a string-like scalar; an enum's values; None: none)."""
    if isinstance(kind, GraphQLNonNull):
        kind = kind.of_type
    if isinstance(kind, GraphQLScalarType):
        return True if kind.name in _TEXT_SCALARS else None
    if isinstance(kind, GraphQLEnumType):
        return kind.values
    return None


class _Executor:
    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Any,
        fill: Fill,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.fill = fill
        self._plans: dict[tuple[str, int], tuple[tuple[SelectionSetNode, ...], list[_Field]]] = {}

    # -- planning (once per type and selection) ------------------------------------------
    def plan(self, parent: GraphQLObjectType, sets: tuple[SelectionSetNode, ...]) -> list[_Field]:
        """The fields ``sets`` select on ``parent``, with the plans of the objects below them
        whose type is known without a value."""
        # Sub-selections are tuples the plans hold, so their identity is a stable key (the
        # cache keeps each tuple alive beside its plan).
        key = (parent.name, id(sets))
        found = self._plans.get(key)
        if found is not None:
            return found[1]
        fields: dict[str, list[FieldNode]] = {}
        for selection_set in sets:
            self._collect(parent, selection_set, fields, set())
        plan: list[_Field] = []
        for response_key, nodes in fields.items():
            name = nodes[0].name.value
            subs = tuple(n.selection_set for n in nodes if n.selection_set is not None)
            if name == "__typename":
                plan.append(_Field(response_key, name, None, {}, ()))
                continue
            definition = parent.fields.get(name)
            if definition is None:
                raise Unsupported(f"{parent.name}.{name}")
            arguments = get_argument_values(definition, nodes[0], self.variables)
            field = _Field(response_key, name, definition.type, arguments, subs)
            kind = definition.type.of_type if field.non_null else definition.type
            if isinstance(kind, GraphQLObjectType):
                field.shape, field.child_type = _OBJECT, kind.name
                field.child = self.plan(kind, subs)
            elif isinstance(kind, GraphQLList):
                item = kind.of_type
                if isinstance(item, GraphQLNonNull) and isinstance(item.of_type, GraphQLObjectType):
                    field.shape, field.child_type = _OBJECT_LIST, item.of_type.name
                    field.child = self.plan(item.of_type, subs)
            plan.append(field)
        self._plans[key] = (sets, plan)
        return plan

    def _collect(
        self,
        parent: GraphQLObjectType,
        selection_set: SelectionSetNode,
        fields: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for selection in selection_set.selections:
            if selection.directives:
                raise Unsupported("directives")
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if self._applies(selection.type_condition, parent):
                    self._collect(parent, selection.selection_set, fields, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                if name in visited or fragment is None:
                    continue
                visited.add(name)
                if self._applies(fragment.type_condition, parent):
                    self._collect(parent, fragment.selection_set, fields, visited)

    def _applies(self, condition: Any, runtime: GraphQLObjectType) -> bool:
        if condition is None:
            return True
        wanted = self.schema.get_type(condition.name.value)
        if wanted is None:
            return False
        if wanted is runtime:
            return True
        return bool(
            not isinstance(wanted, GraphQLObjectType) and self.schema.is_sub_type(wanted, runtime)  # type: ignore[arg-type]
        )

    # -- execution -----------------------------------------------------------------------
    def object(
        self, parent_name: str, plan: list[_Field], source: Any, path: _Chain
    ) -> dict[str, Any]:
        """The selected fields of one object (``parent_name``: its type, for ``__typename``)."""
        out: dict[str, Any] = {}
        is_mapping = type(source) is dict or isinstance(source, Mapping)
        for field in plan:
            key = field.key
            if field.return_type is None:
                out[key] = parent_name
                continue
            name = field.name
            value: Any = source.get(name) if is_mapping else getattr(source, name, None)
            resolve = callable(value)
            if resolve or (value is None and field.non_null):
                info = _Info(name, field.return_type, self.schema, _ResponsePath((path, key)))
                try:
                    value = value(info, **field.arguments) if resolve else self.fill(source, info)
                except Exception as exc:  # graphql-core turns it into an error: let it
                    raise Unsupported(f"{name} raised") from exc
            if value is None:
                if field.non_null:
                    raise Unsupported("null for a non-null field")
                out[key] = None
                continue
            plain = field.plain
            if plain is not None and type(value) is str and (plain is True or value in plain):
                out[key] = value  # the commonest field: stored text, served as it is
            elif field.shape == _OBJECT:
                out[key] = self.object(field.child_type, field.child, value, (path, key))
            elif field.shape == _OBJECT_LIST:
                here = (path, key)
                child, child_type = field.child, field.child_type
                items = []
                for item in value:
                    if item is None:
                        raise Unsupported("null in a list of non-null objects")
                    items.append(self.object(child_type, child, item, here))
                out[key] = items
            else:
                out[key] = self.complete(field.return_type, value, field.subs, (path, key))
        return out

    def complete(
        self,
        kind: Any,
        value: Any,
        subs: tuple[SelectionSetNode, ...],
        path: _Chain,
    ) -> Any:
        """``value`` completed as GraphQL type ``kind`` (graphql-core's ``complete_value``)."""
        if isinstance(kind, GraphQLNonNull):
            if value is None:
                raise Unsupported("null for a non-null field")
            kind = kind.of_type
        if value is None:
            return None
        if isinstance(kind, GraphQLList):
            item = kind.of_type
            return [self.complete(item, entry, subs, path) for entry in value]
        if isinstance(kind, GraphQLScalarType | GraphQLEnumType):
            plain = _plain_text(kind)
            if plain is not None and type(value) is str and (plain is True or value in plain):
                return value  # stored text is already what it serializes to
            try:
                return kind.serialize(value)
            except Exception as exc:  # graphql-core reports a field error: let it
                raise Unsupported(f"{kind} cannot serialize {value!r}") from exc
        runtime = kind
        if not isinstance(kind, GraphQLObjectType):
            typename = value.get("__typename") if isinstance(value, Mapping) else None
            runtime = self.schema.get_type(typename) if typename else None
            if not isinstance(runtime, GraphQLObjectType) or not self.schema.is_sub_type(
                kind, runtime
            ):
                raise Unsupported(f"no runtime type for {kind}")
        return self.object(runtime.name, self.plan(runtime, subs), value, path)


def execute_query(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation: OperationDefinitionNode,
    root: Any,
    variables: Mapping[str, Any],
    fill: Fill,
) -> dict[str, Any]:
    """The ``data`` of a read ``operation`` (a validated document); :class:`Unsupported` when
    graphql-core must answer instead."""
    if operation.operation is not OperationType.QUERY or operation.directives:
        raise Unsupported("not a plain query")
    query_type = schema.query_type
    if query_type is None:
        raise Unsupported("no query type")
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    coerced = get_variable_values(schema, operation.variable_definitions or (), dict(variables))
    if isinstance(coerced, list):
        raise Unsupported("variables do not coerce")
    executor = _Executor(schema, fragments, coerced, fill)
    plan = executor.plan(query_type, (operation.selection_set,))
    return executor.object(query_type.name, plan, root, None)


__all__ = ["Unsupported", "execute_query"]
