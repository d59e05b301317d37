"""Settings: the project file ``partnersync.toml`` and ``PARTNERSYNC_*`` environment variables.

A project is a directory holding ``partnersync.toml``; relative paths in it (the SQLite hub, the
key file, the log file) are resolved against that directory. Example::

    [hub]
    database = "sqlite:///hub.db"        # or postgresql://user@host/db
    key_file = ".partnersync/key"
    log_file = "logs/partnersync.log"

    [sync]
    overlap_seconds = 120

    [accounts.my-shop]
    overlap_seconds = 300

    [accounts.my-shop.mapping.products]
    vendor = { default = "Acme" }                  # when Shopify has none
    product_type = { constant = "Apparel" }
    status = { enum_map = { UNLISTED = "active" } }

    [jobs.stock]                                   # partnersync sync run stock
    entity = "inventory"
    schedule = { every = "5m" }                    # or { cron = "*/5 * * * *" }
    sources = ["erp"]                              # a file account with stock CSVs
    targets = ["my-shop"]
    buffer = 2                                     # keep 2 back on every channel
    allocation = 0.8                               # offer 80 % of what is left
    locations = { WH1 = "Main warehouse" }         # source location → target location
    max_drastic_share = 0.2                        # mass-change guard
"""

from __future__ import annotations

import ipaddress
import re
import socket
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from partnersync.errors import ConfigError
from partnersync.mapping.mapper import FieldOverride

PROJECT_FILE = "partnersync.toml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HubConfig(_Strict):
    """Where the hub, the key and the logs live."""

    database: str = "sqlite:///hub.db"
    key_file: str = ".partnersync/key"
    log_file: str = "logs/partnersync.log"


class SyncConfig(_Strict):
    """Engine defaults."""

    overlap_seconds: float = Field(default=120.0, ge=0)
    lease_seconds: float = Field(default=60.0, ge=0.5)
    """How long a run's lease lives without a heartbeat (renewed every third of it): a run
    whose process died is taken over after at most this long."""
    concurrent_pulls: int = Field(default=16, ge=1, le=256)
    """How many of a job's sources are pulled at once: a job over hundreds of shops waits on
    the network, not on each shop in turn. Each source keeps its own rate budget."""


class AppConfig(_Strict):
    """Our OAuth app on a platform (``[apps.shopify]``): what the connect page starts a brand's
    authorisation with. The client secret stays in the environment, never in the file."""

    client_id: str
    client_secret_env: str
    scopes: str = ""
    oauth_url: str | None = None
    """Where the platform's OAuth endpoints live when not on the shop's own host (Taobao:
    ``https://oauth.taobao.com``); a sandbox serves them itself."""


class WebConfig(_Strict):
    """``partnersync serve``: the address brands reach it at and how long a login lasts."""

    public_url: str | None = None
    """The https URL the platforms send brands (and keys) back to; without it, the address
    ``serve`` listens on."""
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)


class AccountConfig(_Strict):
    """Per-account adjustments kept as data in the project file."""

    overlap_seconds: float | None = Field(default=None, ge=0)
    mapping: dict[str, dict[str, FieldOverride]] = Field(default_factory=dict)


Owner = Literal["hub", "platform", "newest"]
Lane = Literal["urgent", "bulk"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``30s``, ``5m``, ``1.5h``, ``1d`` → seconds."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration like 30s, 5m, 1h or 1d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


class ScheduleConfig(_Strict):
    """When a job runs: ``every = "5m"`` or ``cron = "*/5 * * * *"`` (UTC unless ``timezone``).

    ``misfire_grace_seconds``: a fire up to this late (the machine slept, the daemon was
    stopped) still runs — once, however many fires were missed; later than that it is skipped
    and logged. ``jitter_seconds`` spreads many jobs' fires apart.
    """

    every: str | None = None
    cron: str | None = None
    timezone: str = "UTC"
    misfire_grace_seconds: float = Field(default=300.0, ge=1)
    jitter_seconds: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _one_trigger(self) -> ScheduleConfig:
        if (self.every is None) == (self.cron is None):
            raise ValueError('give exactly one of every (e.g. "5m") or cron')
        if self.every is not None and not parse_duration(self.every) > 0:
            raise ValueError("every must be longer than 0s")
        if self.cron is not None:
            fields = self.cron.split()
            if len(fields) != 5:
                raise ValueError(
                    f"cron {self.cron!r} needs 5 fields: minute hour day month weekday"
                )
        return self

    @property
    def every_seconds(self) -> float | None:
        """The interval in seconds (None for a cron schedule)."""
        return parse_duration(self.every) if self.every is not None else None

    def describe(self) -> str:
        """``every 5m`` or ``cron */5 * * * * (UTC)``."""
        return f"every {self.every}" if self.every else f"cron {self.cron} ({self.timezone})"


class JobConfig(_Strict):
    """A sync job: pull ``entity`` from the sources into the hub, then push it to the targets.

    ``inventory``: stock from the sources (e.g. a file account) to the targets' levels;
    ``products``: the sources' catalogue to the targets; ``fulfillments``: shipments from the
    sources to the orders they belong to on the targets; ``orders``: orders of the sources
    (channels) exported to the targets (e.g. a file account for the ERP).
    """

    entity: Literal["inventory", "products", "fulfillments", "orders"]
    sources: list[str] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    pull_sources: bool = True
    refresh_targets: bool = True
    buffer: int = Field(default=0, ge=0)
    allocation: Decimal = Field(default=Decimal(1), gt=0, le=1)
    allocation_by_target: dict[str, Annotated[Decimal, Field(gt=0, le=1)]] = Field(
        default_factory=dict
    )
    """Per target share of the stock; like ``allocation``, above 0 and at most 1 (never more
    stock offered than exists)."""
    locations: dict[str, str] = Field(default_factory=dict)
    max_drastic_share: float = Field(default=0.2, ge=0, le=1)
    ownership: dict[str, Owner] = Field(default_factory=dict)
    default_owner: Owner = "hub"
    schedule: ScheduleConfig | None = None
    """When the daemon runs this job (``partnersync schedule run``); none: only by hand/cron."""
    lane: Lane | None = None
    """``urgent`` (default for inventory, orders, fulfillments) or ``bulk`` (default for
    products): urgent jobs never wait behind a catalogue backfill."""

    @property
    def priority_lane(self) -> Lane:
        """The job's lane, explicit or by entity."""
        if self.lane is not None:
            return self.lane
        return "bulk" if self.entity == "products" else "urgent"


class ProjectConfig(_Strict):
    """The whole project file."""

    hub: HubConfig = Field(default_factory=HubConfig)
    sync: SyncConfig = Field(default_factory=SyncConfig)
    accounts: dict[str, AccountConfig] = Field(default_factory=dict)
    jobs: dict[str, JobConfig] = Field(default_factory=dict)
    apps: dict[str, AppConfig] = Field(default_factory=dict)
    web: WebConfig = Field(default_factory=WebConfig)


class EnvSettings(BaseSettings):
    """``PARTNERSYNC_PROJECT`` (directory) and ``PARTNERSYNC_DATABASE_URL`` (overrides the file)."""

    model_config = SettingsConfigDict(env_prefix="PARTNERSYNC_", extra="ignore")

    project: Path | None = None
    database_url: str | None = None


@dataclass(frozen=True)
class Project:
    """A loaded project: its directory and validated configuration."""

    root: Path
    config: ProjectConfig
    database_override: str | None = None

    @property
    def database_url(self) -> str:
        """The hub URL, a relative SQLite path resolved against the project directory."""
        url = self.database_override or self.config.hub.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith("sqlite:////"):
            relative = url.removeprefix(prefix)
            if relative and relative != ":memory:":
                return prefix + str((self.root / relative).resolve())
        return url

    @property
    def key_file(self) -> Path:
        """The vault key file."""
        return self.root / self.config.hub.key_file

    @property
    def log_file(self) -> Path:
        """The log file."""
        return self.root / self.config.hub.log_file

    def account(self, name: str) -> AccountConfig:
        """Per-account settings (defaults when the file has none)."""
        return self.config.accounts.get(name, AccountConfig())

    def overlap_seconds(self, account: str) -> float:
        """The overlap for an account's incremental pulls."""
        own = self.account(account).overlap_seconds
        return self.config.sync.overlap_seconds if own is None else own


DEFAULT_PROJECT_FILE = """\
# partnersync project file — see README.md ("Project file").
[hub]
database = "sqlite:///hub.db"
key_file = ".partnersync/key"
log_file = "logs/partnersync.log"

[sync]
overlap_seconds = 120
"""


def load_project(directory: Path | None = None) -> Project:
    """Load ``partnersync.toml`` from ``directory`` (or ``PARTNERSYNC_PROJECT``, or the cwd)."""
    env = EnvSettings()
    root = (directory or env.project or Path.cwd()).resolve()
    path = root / PROJECT_FILE
    if not path.exists():
        raise ConfigError(f"no {PROJECT_FILE} in {root}; run 'partnersync init' there first")
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    try:
        config = ProjectConfig.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"{path}: {where}: {first['msg']}") from exc
    return Project(root=root, config=config, database_override=env.database_url)


def init_project(directory: Path) -> Path:
    """Create ``partnersync.toml`` in ``directory`` unless it exists; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PROJECT_FILE
    if not path.exists():
        path.write_text(DEFAULT_PROJECT_FILE)
    return path


SHARED_ADDRESS_SPACE = ipaddress.ip_network("100.64.0.0/10")
"""Carrier-grade NAT (RFC 6598): not public, though Python does not count it as private."""


def host_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address a host *is* — in any spelling a resolver accepts: dotted, decimal
    (``2130706433``), octal (``0177.0.0.1``), hex (``0x7f.1``), short (``127.1``), IPv6 with an
    embedded IPv4 — or None for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if not re.fullmatch(r"[0-9a-fA-FxX.]+", host) or not any(c.isdigit() for c in host):
            return None
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback addresses (127.0.0.0/8, ::1), in any spelling."""
    if host.lower() in ("localhost", "localhost."):
        return True
    address = host_address(host)
    return address is not None and address.is_loopback


def is_internal_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Private, link-local, shared (CGNAT), reserved, multicast, unspecified or local IPv6."""
    return (
        address.is_private
        or address.is_link_local
        or address.is_reserved
        or address.is_multicast
        or address.is_unspecified
        or address in SHARED_ADDRESS_SPACE
    )


def validate_directory(url: str) -> str:
    """A file account's directory (``file://`` prefix allowed), made absolute; must exist."""
    path = Path(url.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise ConfigError(f"{path} is not a directory")
    return str(path.resolve())


def validate_base_url(url: str, *, allow_loopback: bool = False) -> str:
    """Accept ``https://`` URLs to public hosts; plain http only to loopback when allowed."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(f"base URL {url!r} must be an http(s) URL with a host")
    if parts.username or parts.password:
        raise ConfigError("base URL must not carry credentials")
    loopback = is_loopback_host(host)
    if loopback and not allow_loopback:
        raise ConfigError(
            f"base URL {url!r} points at this machine; pass --allow-loopback for tests"
        )
    if parts.scheme == "http" and not loopback:
        raise ConfigError(f"base URL {url!r} must use https")
    address = host_address(host)
    if address is None and not loopback:
        address = _resolved_internal(host)
    if not loopback and address is not None and is_internal_address(address):
        raise ConfigError(f"base URL {url!r} points at a private or reserved address")
    return url.rstrip("/")


def _resolved_internal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An internal address ``host`` resolves to, if it resolves to one (a name pointing into
    the local network is refused like the address itself; an unresolvable name is left to
    fail when used)."""
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = host_address(str(info[4][0]))
        if address is not None and (address.is_loopback or is_internal_address(address)):
            return address
    return None
