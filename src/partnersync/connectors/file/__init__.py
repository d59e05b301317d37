"""The file connector: CSV/JSONL drops in, order exports out; registered as ``FILE``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from partnersync.connectors.base import ConnectorSpec
from partnersync.connectors.file.connector import FileConnector
from partnersync.connectors.file.mappers import IMPORT_MAPPERS


def no_auth(secrets: Mapping[str, str]) -> httpx.Auth:
    """Files need no credentials."""
    return httpx.Auth()


def _sandbox(**options: Any) -> Any:
    """A drop directory with generated CSV and JSONL files."""
    from partnersync.sandbox.files import FileSandbox

    return FileSandbox(**options)


FILE = ConnectorSpec(
    platform="file",
    connector=FileConnector,
    mappers=IMPORT_MAPPERS,
    auth=no_auth,
    secret_fields=(),
    sandbox=_sandbox,
    location="directory",
)
"""The file connector as the registry sees it."""

__all__ = ["FILE", "FileConnector"]
