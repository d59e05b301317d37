"""What a push decides before it writes: options, planned writes, problems, conflicts, keys.

Keys (DESIGN §2, "every key names the target account"): an outbox row's idempotency key is
derived from (target, entity, record key, content hash) plus a random nonce drawn when the row is
created. The nonce makes a key identify *one attempt at one intended state*: a write needed
again later (the shop drifted back) gets a new row and a new key, while a retry or a replay of a
row that is still open reuses the row and so its key. A row that ended (done, dead, superseded)
never suppresses a fresh plan.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

from partnersync.errors import ConfigError, PartnersyncError

OWNERS = ("hub", "platform", "newest")


def digest(*parts: str | bytes) -> str:
    """A short, stable hash of the parts (NUL-separated, so parts never run together)."""
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part if isinstance(part, bytes) else part.encode())
        hasher.update(b"\x00")
    return hasher.hexdigest()[:32]


def fresh_idempotency_key(target: str, entity: str, key: str, content_hash: str) -> str:
    """A new key for a new attempt at writing ``content_hash`` for ``key`` to ``target``."""
    return digest(target, entity, key, content_hash, secrets.token_hex(8))


def pushed_quantity(available: int, buffer: int, allocation: Decimal) -> int:
    """max(0, floor((available − buffer) × allocation)) — exact, no float rounding."""
    return max(0, math.floor((Decimal(available) - buffer) * allocation))


@dataclass(frozen=True)
class PushOptions:
    """How to push (from one job in the project file, or CLI flags).

    Stock numbers are range-checked here, where every path into a push passes: a buffer below
    zero or an allocation above one would offer more stock than exists.
    """

    sources: tuple[str, ...] = ()
    dry_run: bool = False
    force: bool = False
    buffer: int = 0
    allocation: Decimal = Decimal(1)
    locations: Mapping[str, str] = field(default_factory=dict)
    max_drastic_share: float = 0.2
    ownership: Mapping[str, str] = field(default_factory=dict)
    default_owner: str = "hub"
    job: str | None = None
    targets: tuple[str, ...] = ()
    """Every target of the job this push belongs to (a shipment naming no channel is ambiguous
    when there are several)."""

    def __post_init__(self) -> None:
        if self.buffer < 0:
            raise ConfigError(f"buffer must be 0 or more (got {self.buffer})")
        if not Decimal(0) < Decimal(self.allocation) <= Decimal(1):
            raise ConfigError(
                f"allocation must be above 0 and at most 1 (got {self.allocation}): "
                "a channel can be offered at most all of the stock"
            )
        if not 0 <= self.max_drastic_share <= 1:
            raise ConfigError(
                f"max_drastic_share must be within 0..1 (got {self.max_drastic_share})"
            )
        for name, owner in {**self.ownership, "(default)": self.default_owner}.items():
            if owner not in OWNERS:
                raise ConfigError(f"owner of {name} must be one of {OWNERS} (got {owner!r})")

    def owner(self, field_name: str) -> str:
        """Who wins ``field_name`` (``variants[SKU].price`` is owned as ``price``)."""
        base = field_name.rsplit(".", 1)[-1]
        return self.ownership.get(field_name) or self.ownership.get(base) or self.default_owner

    def describe(self) -> dict[str, Any]:
        """What a replay needs to plan the same push again from the current state."""
        return {"job": self.job, "sources": list(self.sources)}


@dataclass(frozen=True)
class FieldChange:
    """One field the push would change on the platform."""

    field: str
    current: Any
    new: Any


@dataclass
class PlannedWrite:
    """A write the push would make.

    ``identity`` is what makes two writes "the same intended state" (default: the payload);
    order exports use the order's status, so other edits do not export an order again.
    """

    key: str
    label: str
    operation: str
    changes: list[FieldChange]
    payload: dict[str, Any]
    source_ref: str | None = None
    drastic: bool = False
    creates: bool = False
    identity: Any = None

    @property
    def content_hash(self) -> str:
        """Hash of what the write sets."""
        basis = self.payload if self.identity is None else self.identity
        return digest(orjson.dumps(basis, option=orjson.OPT_SORT_KEYS, default=str))


@dataclass(frozen=True)
class Problem:
    """A hub record the push cannot place on the target, and why (reported, never guessed)."""

    key: str
    reason: str
    source_ref: str | None
    payload: Any


@dataclass(frozen=True)
class Conflict:
    """A field changed on both sides since the last agreement, and who won."""

    key: str
    field: str
    hub: Any
    platform: Any
    baseline: Any
    policy: str
    winner: str


@dataclass
class PushPlan:
    """What a push would do."""

    target: str
    entity: str
    writes: list[PlannedWrite] = field(default_factory=list)
    unchanged: int = 0
    problems: list[Problem] = field(default_factory=list)
    conflicts: list[Conflict] = field(default_factory=list)
    target_records: int = 0
    adoptions: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    """(hub key, target id, baseline) of records already equal on the target, to bind."""

    @property
    def drastic(self) -> int:
        """Writes the mass-change guard counts."""
        return sum(1 for w in self.writes if w.drastic)


@dataclass
class PushSummary:
    """How a push ended."""

    run_id: int
    target: str
    entity: str
    status: str
    plan: PushPlan
    created: int = 0
    updated: int = 0
    dead_lettered: int = 0
    requests: int = 0
    error: str | None = None


class MassChangeError(PartnersyncError):
    """A push would change too much of a channel at once; it was stopped before writing."""

    def __init__(self, message: str, plan: PushPlan) -> None:
        super().__init__(message)
        self.plan = plan
