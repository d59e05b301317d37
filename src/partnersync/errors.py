"""The one exception tree of partnersync.

Every error carries an :class:`Action` telling the engine what to do with it, so the engine reads
``error.action`` and never inspects exception types of third-party libraries (those are translated
at the border, in ``connectors/http`` and ``sync/store``).

::

    PartnersyncError
    ├── ConfigError                    fail      bad settings or project file
    ├── VaultError                     fail      missing key, tampered ciphertext
    ├── StoreError                     fail      the hub database refused an operation
    ├── CapabilityError                fail      a connector was asked for something it cannot do
    ├── MappingError                   skip      one record cannot become a canonical record
    └── ConnectorError                 (varies)  talking to a platform failed
        ├── AuthenticationError        fail      401: bad or expired credentials
        ├── PermissionDeniedError      fail      403: credentials lack a scope
        ├── NotFoundError              fail      404
        ├── BadRequestError            fail      other 4xx: our request is wrong
        ├── RateLimitedError           retry     429 or a platform's throttle signal
        ├── PlatformUnavailableError   retry     5xx
        ├── TransportError             retry     timeouts, connection resets
        ├── BadResponseError           fail      a body we cannot parse or that breaks the protocol
        └── PaginationLoopError        fail      a paginator was handed the same cursor twice
"""

from __future__ import annotations

import enum


class Action(enum.StrEnum):
    """What the engine does when an error reaches it."""

    RETRY = "retry"
    SKIP = "skip"
    FAIL = "fail"


class PartnersyncError(Exception):
    """Base of every error partnersync raises on purpose."""

    action: Action = Action.FAIL


class ConfigError(PartnersyncError):
    """Settings or the project file are invalid or missing."""


class VaultError(PartnersyncError):
    """A secret could not be encrypted or decrypted (missing key, tampered ciphertext)."""


class StoreError(PartnersyncError):
    """The hub store refused an operation."""


class AlreadyRunningError(PartnersyncError):
    """The job, or the same account × entity × direction, is running elsewhere right now."""

    def __init__(self, message: str, *, scope: str, holder: str | None = None) -> None:
        super().__init__(message)
        self.scope = scope
        self.holder = holder


class FencedOutError(StoreError):
    """A write came from a run whose lease was taken over (its epoch is no longer current);
    it is refused so a paused worker that wakes up cannot write over its successor."""


class CapabilityError(PartnersyncError):
    """A connector was asked to do something its capabilities do not declare."""


class MappingError(PartnersyncError):
    """A record could not be mapped; names the account, entity, record, field and reason."""

    action = Action.SKIP

    def __init__(
        self,
        *,
        account: str,
        entity: str,
        external_id: str | None,
        field: str,
        reason: str,
        mapper: str = "",
    ) -> None:
        self.account = account
        self.entity = entity
        self.external_id = external_id
        self.field = field
        self.reason = reason
        self.mapper = mapper
        super().__init__(
            f"{account}/{entity} record {external_id or '?'}: field {field!r}: {reason}"
        )


class MappingSpecError(ConfigError):
    """A per-account mapping override is invalid (unknown field, conflicting options)."""


class ConnectorError(PartnersyncError):
    """Talking to a partner platform failed."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class AuthenticationError(ConnectorError):
    """The platform rejected our credentials (HTTP 401)."""


class PermissionDeniedError(ConnectorError):
    """The credentials are valid but lack a scope (HTTP 403)."""


class NotFoundError(ConnectorError):
    """The resource does not exist (HTTP 404)."""


class BadRequestError(ConnectorError):
    """The platform says our request is wrong (other 4xx); repeating it cannot help."""


class RateLimitedError(ConnectorError):
    """The platform asks us to slow down; ``retry_after`` is its hint in seconds, if any."""

    action = Action.RETRY

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class PlatformUnavailableError(ConnectorError):
    """The platform answered with a server error (5xx)."""

    action = Action.RETRY


class TransportError(ConnectorError):
    """The request never got an answer: timeout, refused or reset connection."""

    action = Action.RETRY


class BadResponseError(ConnectorError):
    """The platform's answer cannot be parsed or breaks its documented protocol."""


class PaginationLoopError(BadResponseError):
    """A paginator received a cursor it had already followed; continuing would loop forever."""
