"""`partnersync serve` in its own process for a test, and reading what `accounts connect` asks
the user to open."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def served(
    root: Path, keys: str, log_path: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[str]:
    """Run `partnersync serve` (with ``args``) on a free loopback port until the block ends;
    yields its base URL once it answers (its stderr goes to ``log_path``: a full pipe would
    stall it)."""
    port = free_port()
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "partnersync",
                "-p",
                str(root),
                "serve",
                "--port",
                str(port),
                *args,
            ],
            env={**os.environ, "PARTNERSYNC_KEYS": keys, **(env or {})},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.get(f"{base}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.1)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)


def authorize_url_of(process: subprocess.Popen[str]) -> str:
    """The address `accounts connect` prints for the user to open."""
    assert process.stdout is not None
    line = ""
    while not line.startswith("http"):
        line = process.stdout.readline().strip()
        assert line or process.poll() is None, process.communicate()
    return line
