"""The connector contract: capabilities, pages of raw records, and the registered spec.

A connector talks to one platform for one account. It declares what it can do as
:class:`Capabilities`; the engine asks before any I/O, and a connector refuses an undeclared
entity with :class:`~partnersync.errors.CapabilityError`. Pulling yields :class:`Page` s of the
platform's own JSON; mapping to the canonical model is the mapping layer's job, and storing it
is the engine's: a connector never touches the database.

A connector implements :meth:`Connector.stream` for the entities it declares; the engine calls
:meth:`Connector.pull`, which refuses an undeclared entity before any I/O. Writes are declared
per entity as a :class:`Writer` (the verbs it really supports, its batch limit, whether it takes
idempotency keys and compare-and-set, how a lost answer is verified), and the push engine plans
within that declaration.

A minimal connector (this example runs as a test, and ``tests/contract`` holds it to the same
suite as the built-in ones)::

    >>> import anyio
    >>> class TinyConnector(Connector):
    ...     platform = "tiny"
    ...     capabilities = Capabilities.of(EntityCapability("products"))
    ...
    ...     async def stream(self, entity, *, since=None):
    ...         yield Page(records=[{"id": "1"}], number=1, requests=1)
    >>> async def first_ids():
    ...     async with TinyConnector(AccountInfo("acme", "tiny", "http://127.0.0.1")) as tiny:
    ...         return [page.records async for page in tiny.pull("products")]
    >>> anyio.run(first_ids)
    [[{'id': '1'}]]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

import httpx

from partnersync.clock import Clock, SystemClock
from partnersync.connectors.http.client import HttpClient, RetryPolicy
from partnersync.connectors.http.ratelimit import RateBudget, TokenBucket
from partnersync.errors import CapabilityError

if TYPE_CHECKING:
    from partnersync.mapping.export import ExportMapper
    from partnersync.mapping.mapper import Mapper
    from partnersync.mapping.model import Shipment
    from partnersync.sandbox.framework import Sandbox


VERBS = frozenset({"create", "update", "delete"})


@dataclass(frozen=True)
class Writer:
    """How one entity is written to the platform (the push engine plans within it).

    ``verbs``: what the platform really supports (a create is never planned where only
    ``update`` is declared); ``batch_limit``: records per write request; ``idempotency_keys``:
    the platform de-duplicates a repeated request by our key; ``compare_and_set``: a write can
    carry the value it expects to replace; ``verified_by``: the natural key a lost answer is
    looked up by before the write is repeated (``None``: the write is safe to repeat);
    ``all_or_none``: a refused batch applied nothing (else the items not refused landed).
    """

    verbs: frozenset[str]
    batch_limit: int = 1
    idempotency_keys: bool = False
    compare_and_set: bool = False
    verified_by: str | None = None
    all_or_none: bool = False

    def __post_init__(self) -> None:
        unknown = self.verbs - VERBS
        if unknown or not self.verbs:
            raise ValueError(f"writer verbs must be some of {sorted(VERBS)}, not {sorted(unknown)}")
        if self.batch_limit < 1:
            raise ValueError("a writer's batch limit is at least 1")


@dataclass(frozen=True)
class EntityCapability:
    """What a connector can do with one entity.

    How it is read (the stream): ``incremental`` by ``cursor_field``; ``sorted_by_cursor``:
    pages arrive in ascending ``cursor_field`` order, so the engine may advance the cursor
    after each page; otherwise it advances once, at the end of the run, to the run's start
    minus the overlap (DESIGN §4); ``page_limit``: the most records one page may ask for;
    ``window``: the longest time span one query may cover (walked window by window, each a
    checkpoint); ``resumable``: see below. How it is written: ``writer``, if it can be.
    """

    entity: str
    pull: bool = True
    incremental: bool = True
    sorted_by_cursor: bool = True
    cursor_field: str = "updated_at"
    page_limit: int | None = None
    window: timedelta | None = None
    writer: Writer | None = None
    resumable: bool = False
    """For a stream not sorted by the cursor: pages carry a ``resume_token`` and
    :meth:`Connector.pull` can continue a walk from one (a large shop's inventory is not
    re-read from the start after every interruption)."""

    @property
    def push(self) -> frozenset[str]:
        """The write verbs declared (empty: the entity cannot be pushed)."""
        return self.writer.verbs if self.writer is not None else frozenset()


@dataclass(frozen=True)
class Capabilities:
    """The entities a connector handles, keyed by name."""

    entities: Mapping[str, EntityCapability]

    @classmethod
    def of(cls, *items: EntityCapability) -> Capabilities:
        """Build from a list of entity capabilities."""
        return cls({item.entity: item for item in items})

    def require_pull(self, entity: str) -> EntityCapability:
        """The entity's capability, or CapabilityError if it cannot be pulled."""
        capability = self.entities.get(entity)
        if capability is None or not capability.pull:
            raise CapabilityError(
                f"cannot pull {entity!r}; pullable entities: "
                f"{sorted(name for name, cap in self.entities.items() if cap.pull)}"
            )
        return capability


@dataclass
class Page:
    """One page of raw platform records, with what it cost to fetch."""

    records: list[dict[str, Any]]
    number: int
    requests: int
    resume_token: str | None = None
    """Where the walk goes on after this page (None: it ended here), for entities declared
    ``resumable``: the engine stores it with the page, and a run after an interrupted one
    continues from it instead of starting over."""


@dataclass(frozen=True)
class PullPlan:
    """How one pull will read: whether its pages come sorted by the cursor field (the engine
    then moves the cursor page by page) and whether an interrupted walk can go on from a
    page's ``resume_token``; ``how`` names the way for logs (``paged``, ``bulk``)."""

    sorted_by_cursor: bool
    resumable: bool
    how: str = "paged"


@dataclass(frozen=True)
class InventoryWrite:
    """Set ``quantity`` available for an item at a location, if it still is ``change_from``.

    ``handle`` is what the platform addresses the item by (see :meth:`Connector.record_handle`).
    """

    handle: str
    location_id: str
    quantity: int
    change_from: int | None


@dataclass(frozen=True)
class InventoryWriteOutcome:
    """Whether a batch of inventory writes applied; if not, why, by index in the batch.

    ``stale``: the compare-and-set value no longer holds (re-read, then plan again);
    ``rejected``: the platform refuses that write whatever we send (e.g. its item is gone);
    ``errors``: reasons the platform gave for the batch as a whole.
    """

    applied: bool
    stale: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()
    rejected: Mapping[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProductWriteOutcome:
    """A product as the platform now has it: its id and its variants' ids by SKU."""

    external_id: str
    variant_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookSpec:
    """How a platform signs and labels its webhook deliveries: the header carrying the
    base64 HMAC-SHA256 of the raw body, the secret field it is keyed with, the headers naming
    the delivery (first present wins), the topic and the send time, and topic → entity."""

    signature_header: str
    secret_fields: tuple[str, ...]
    id_headers: tuple[str, ...]
    topic_header: str
    topics: Mapping[str, str]
    timestamp_header: str | None = None


@dataclass(frozen=True)
class OAuthSpec:
    """A platform's OAuth 2 authorization-code flow (see :mod:`partnersync.auth.oauth2`).

    ``flow(base_url, client_id, client_secret, *, scopes, redirect_uri, oauth_url, transport)``
    gives the authorize URL, checks the callback, exchanges the code and refreshes;
    ``refreshing_auth(secrets, keeper)`` is the auth a connector sends with, taking the current
    access token from the keeper; ``field_names`` maps ``client_id``, ``client_secret`` and
    ``access_token`` to the account's own secret names where they differ (Taobao signs with
    ``app_key``/``app_secret`` and sends the token as ``session``); ``oauth_url`` is where the
    OAuth endpoints live when not on the account's own host."""

    flow: Callable[..., Any]
    refreshing_auth: Callable[[Mapping[str, str], Any], httpx.Auth]
    field_names: Mapping[str, str] = field(default_factory=dict)
    oauth_url: str | None = None

    def field(self, name: str) -> str:
        """The account's secret field holding ``name`` (client_id, client_secret, access_token)."""
        return self.field_names.get(name, name)


BudgetFactory = Callable[[str, float, float], RateBudget]
"""(key, capacity, refill rate) → the budget of that key."""


@dataclass(frozen=True)
class AccountInfo:
    """The non-secret facts a connector needs about the account it talks to."""

    name: str
    platform: str
    base_url: str
    api_version: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)


class Connector(ABC):
    """Talks to one platform for one account; use as an async context manager."""

    platform: str
    capabilities: Capabilities

    def __init__(
        self,
        account: AccountInfo,
        *,
        auth: httpx.Auth | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock | None = None,
        budgets: BudgetFactory | None = None,
    ) -> None:
        self.account = account
        self.auth = auth
        if account.options.get("guard_addresses"):
            from partnersync.connectors.http.guard import AddressGuardTransport

            transport = AddressGuardTransport(transport)
        self.transport = transport
        self.clock = clock or SystemClock()
        self.budgets = budgets

    def rate_budget(self, key: str, capacity: float, refill_rate: float) -> RateBudget:
        """The budget requests spend from, keyed as the platform counts its limit (e.g. per
        app and shop): shared with every job and process using the same key when the sync
        layer passes ``budgets``, this connector's own token bucket otherwise."""
        if self.budgets is None:
            return TokenBucket(capacity, refill_rate, clock=self.clock)
        return self.budgets(f"{self.platform}:{key}", capacity, refill_rate)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Release connections (default: nothing to release)."""

    def http_client(self, base_url: str, *, limiter: RateBudget | None = None) -> HttpClient:
        """The shared HTTP client for this account: its auth, transport and clock, and the
        account options ``max_attempts`` (default 6) and ``timeout`` (seconds, default 30)."""
        options = self.account.options
        return HttpClient(
            base_url,
            auth=self.auth,
            limiter=limiter,
            retry=RetryPolicy(max_attempts=int(options.get("max_attempts", 6))),
            clock=self.clock,
            transport=self.transport,
            timeout=float(options.get("timeout", 30.0)),
        )

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far, retries included."""
        return 0

    def record_updated_at(self, entity: str, record: Mapping[str, Any]) -> datetime | None:
        """The platform's update time of a raw record, if it can be read.

        The engine uses it for records that fail mapping, so the cursor can still move past
        them once their dead letter is committed (it never reads platform fields itself).
        """
        return None

    def record_handle(self, entity: str, record: Mapping[str, Any]) -> str | None:
        """What a write to this raw record addresses on the platform (a Shopify inventory-item
        id, a WooCommerce ``product/variation``), when it differs from its external id.

        The binder keeps it next to the record's key; the canonical model never holds it.
        """
        return None

    def record_source(self, entity: str, record: Mapping[str, Any]) -> str | None:
        """Where a raw record came from, for people (``stock.csv:12``); ``None`` if not known."""
        return None

    async def prepare(self) -> None:  # noqa: B027 - optional hook, not abstract
        """Learn what mapping needs (e.g. the shop currency) before records are mapped."""

    def mapping_settings(self) -> dict[str, Any]:
        """Account-level facts mappers need (e.g. the shop currency), learned while pulling."""
        return {}

    async def check(self) -> str:
        """Prove the credentials work with one cheap call; returns a human description."""
        raise CapabilityError(f"{self.platform} connector has no check")

    def pull(
        self, entity: str, *, since: datetime | None = None, resume: str | None = None
    ) -> AsyncIterator[Page]:
        """Pages of ``entity`` records changed at or after ``since`` (all when ``None``); with
        ``resume``, the rest of an earlier walk with the same ``since``, from the page token it
        left (a walk whose plan was ``resumable``).

        An entity the connector does not declare is refused here, before any I/O.
        """
        self.capabilities.require_pull(entity)
        if resume is None:
            return self.stream(entity, since=since)
        return self.stream_from(entity, resume, since=since)

    @abstractmethod
    def stream(self, entity: str, *, since: datetime | None = None) -> AsyncIterator[Page]:
        """Yield pages of a declared entity's records (an async generator)."""

    async def plan_pull(self, entity: str, *, since: datetime | None = None) -> PullPlan:
        """How a pull of ``entity`` from ``since`` will read (the next :meth:`pull` of it
        follows this plan). By default as the capability declares; a connector with more than
        one way to read (Shopify: paging or a bulk operation) chooses here."""
        capability = self.capabilities.require_pull(entity)
        return PullPlan(capability.sorted_by_cursor, capability.resumable)

    def stream_from(
        self, entity: str, resume: str, *, since: datetime | None = None
    ) -> AsyncIterator[Page]:
        """The rest of a walk from a page's ``resume_token`` (``resumable`` entities)."""
        raise CapabilityError(f"{self.platform} cannot resume a walk of {entity}")

    # -- writes: each is optional; a connector declares what it supports in its capabilities
    def _cannot(self, what: str) -> CapabilityError:
        return CapabilityError(f"the {self.platform} connector cannot {what}")

    async def set_inventory(
        self, writes: Sequence[InventoryWrite], idempotency_key: str
    ) -> InventoryWriteOutcome:
        """Set absolute available quantities, all or none, compare-and-set on ``change_from``."""
        raise self._cannot("set inventory")

    async def read_inventory(self, handles: Sequence[str]) -> list[dict[str, Any]]:
        """Fresh raw inventory-level records of these items (same shape as pulled ones)."""
        raise self._cannot("read inventory")

    async def upsert_product(
        self, payload: Mapping[str, Any], external_id: str | None
    ) -> ProductWriteOutcome:
        """Send a product payload (built by the spec's export mapper): create the product, or
        update the one with ``external_id``."""
        raise self._cannot("write products")

    async def find_product(self, handle: str) -> ProductWriteOutcome | None:
        """The product with this handle, if the platform has one (to verify a lost write)."""
        raise self._cannot("look products up")

    async def create_fulfillment(self, order_external_id: str, shipment: Shipment) -> str:
        """Fulfil an order's open items with the shipment's tracking; returns the new id."""
        raise self._cannot("create fulfillments")

    async def find_fulfillment(self, order_external_id: str, tracking_number: str) -> str | None:
        """The order's fulfillment carrying this tracking number, if any."""
        raise self._cannot("look fulfillments up")

    async def write_orders(self, batch_key: str, orders: Sequence[Mapping[str, Any]]) -> str:
        """Deliver a batch of orders (e.g. as a file); returns where they went."""
        raise self._cannot("export orders")

    def find_export(self, batch_key: str) -> str | None:
        """Where a batch of orders was already delivered, if it was."""
        raise self._cannot("export orders")


AuthFactory = Callable[[Mapping[str, str]], httpx.Auth]


@dataclass(frozen=True)
class ConnectorSpec:
    """What a platform package registers under the ``partnersync.connectors`` entry point.

    ``sandbox`` builds the platform's loopback fake; it accepts ``fast=True`` (rate limits scaled
    up so tests never wait) and platform knobs. Connectors accept the account option
    ``page_size`` (an upper bound on records per page), which the contract suite uses to make
    every sandbox pull span several pages.
    """

    platform: str
    connector: type[Connector]
    mappers: Mapping[str, type[Mapper[Any]]]
    auth: AuthFactory
    secret_fields: tuple[str, ...]
    sandbox: Callable[..., Sandbox] | None = None
    export_mappers: Mapping[str, type[ExportMapper[Any]]] = field(default_factory=dict)
    """Entity → the mapper building the payload a write of it sends (DESIGN §2)."""
    default_api_version: str | None = None
    oauth: OAuthSpec | None = None
    """OAuth 2 for this platform (``accounts connect`` and the connect page)."""
    webhooks: WebhookSpec | None = None
    """Webhook deliveries this platform sends (``partnersync serve`` receives them)."""
    key_handover_path: str | None = None
    """Where a store owner approves handing API keys to an app, which the store then POSTs to
    our callback (WooCommerce: ``/wc-auth/v1/authorize``)."""
    optional_secret_fields: tuple[str, ...] = ()
    """Secret fields an account may have (e.g. a webhook secret) besides the required ones."""
    location: str = "http"
    """What an account's URL is: ``http`` (a public https URL) or ``directory`` (a local path)."""
