"""A sandbox for the file connector: a drop directory with generated CSV and JSONL files.

It needs no server; it shares the sandbox interface (``url``, ``credentials``, ``log``) so the
contract suite and tests treat it like any other platform.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Self

import orjson

from partnersync.sandbox.framework import Sandbox


class FileSandbox(Sandbox):
    """Writes inventory, product and shipment drops into a directory (temporary by default)."""

    platform = "file"

    def __init__(
        self, *, directory: Path | None = None, skus: int = 30, files: int = 3, **_: Any
    ) -> None:
        super().__init__()
        self.directory = directory
        self._temporary = directory is None
        self.skus = skus
        self.file_count = files
        self._clock = 0.0

    def start(self) -> Self:
        """Create the directory and the generated files."""
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="partnersync-files-"))
        for folder in ("inventory", "products", "fulfillments"):
            (self.directory / folder).mkdir(parents=True, exist_ok=True)
        per_file = self.skus // self.file_count if self.file_count else 0
        for index in range(self.file_count):
            skus = [f"SKU-{n:04d}" for n in range(index * per_file, (index + 1) * per_file)]
            suffix = "jsonl" if index % 2 else "csv"
            self.write(
                f"inventory/stock-{index}.{suffix}",
                [
                    {"sku": s, "location": "Main warehouse", "available": str(10 + i)}
                    for i, s in enumerate(skus)
                ],
            )
            self.write(
                f"products/catalogue-{index}.{suffix}",
                [
                    {
                        "handle": f"item-{s.lower()}",
                        "title": f"Item {s}",
                        "sku": s,
                        "price": "12.50",
                        "currency": "USD",
                        "vendor": "Brand",
                    }
                    for s in skus
                ],
            )
            self.write(
                f"fulfillments/shipped-{index}.{suffix}",
                [
                    {
                        "order": f"#{1000 + n}",
                        "carrier": "UPS",
                        "tracking_number": f"1Z{index}{n:06d}",
                    }
                    for n in range(per_file)
                ],
            )
        return self

    def stop(self) -> None:
        """Remove a temporary directory."""
        if self._temporary and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def url(self) -> str:
        """The directory, as a file account's URL."""
        assert self.directory is not None, "start the sandbox first"
        return str(self.directory)

    def credentials(self) -> dict[str, str]:
        """Files need none."""
        return {}

    def write(
        self, relative: str, rows: list[dict[str, Any]], *, mtime: float | None = None
    ) -> Path:
        """Drop a file atomically; CSV or JSONL by its suffix."""
        assert self.directory is not None, "start the sandbox first"
        path = self.directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jsonl":
            data = b"".join(orjson.dumps(row) + b"\n" for row in rows)
        else:
            columns = list(dict.fromkeys(k for row in rows for k in row))
            lines = [",".join(columns)] + [
                ",".join(str(row.get(c, "")) for c in columns) for row in rows
            ]
            data = ("\n".join(lines) + "\n").encode()
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_bytes(data)
        # Modification times are real and strictly increasing, so drops sort in write order.
        self._clock = mtime if mtime is not None else max(self._clock + 0.01, time.time())
        os.utime(temporary, (self._clock, self._clock))
        os.replace(temporary, path)
        return path
