"""Connector discovery through the ``partnersync.connectors`` entry point group.

Built-in connectors register exactly like third-party ones (``pyproject.toml``), so a plugin
package needs no change here. The registry is an object, not module state: tests build their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points

from partnersync.connectors.base import ConnectorSpec
from partnersync.errors import ConfigError

ENTRY_POINT_GROUP = "partnersync.connectors"


class ConnectorRegistry:
    """Platform name → :class:`ConnectorSpec`."""

    def __init__(self) -> None:
        self._specs: dict[str, ConnectorSpec] = {}

    @classmethod
    def from_entry_points(cls) -> ConnectorRegistry:
        """Load every connector installed in this environment."""
        registry = cls()
        for point in entry_points(group=ENTRY_POINT_GROUP):
            spec = point.load()
            if not isinstance(spec, ConnectorSpec):
                raise ConfigError(f"entry point {point.name!r} does not name a ConnectorSpec")
            registry.register(spec)
        return registry

    def register(self, spec: ConnectorSpec) -> None:
        """Add a connector; a second one for the same platform is refused."""
        if spec.platform in self._specs:
            raise ConfigError(f"connector for {spec.platform!r} registered twice")
        self._specs[spec.platform] = spec

    def get(self, platform: str) -> ConnectorSpec:
        """The spec for ``platform``, or ConfigError naming the installed ones."""
        try:
            return self._specs[platform]
        except KeyError:
            raise ConfigError(
                f"no connector for platform {platform!r}; installed: {sorted(self._specs)}"
            ) from None

    def __iter__(self) -> Iterator[ConnectorSpec]:
        return iter(self._specs.values())

    def platforms(self) -> list[str]:
        """Installed platform names."""
        return sorted(self._specs)
