"""A project run by real `partnersync` processes: a slow sandbox shop, an ERP drop, one
scheduled orders job (for the scheduling, cron-mode and run-state tests)."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, text

from partnersync.auth.vault import Vault
from partnersync.sandbox.files import FileSandbox
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import SHOP_TOKEN, make_service
from tests.integration.push_world import add_files

WEBHOOK_SECRET = "whsec-world-0123456789"


class World:
    """A project (SQLite hub) with a slow shop, an ERP drop and one scheduled orders job."""

    def __init__(
        self,
        root: Path,
        shop: ShopifySandbox,
        drop: FileSandbox,
        schedule: str,
        database_url: str | None = None,
    ) -> None:
        self.root = root
        self.shop = shop
        self.drop = drop
        self.keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        self.url = database_url or f"sqlite:///{root / 'hub.db'}"
        service = make_service(root, Vault.parse(self.keys), self.url)
        service.add_account(
            name="shop",
            platform="shopify",
            base_url=shop.url,
            secrets={"access_token": SHOP_TOKEN, "webhook_secret": WEBHOOK_SECRET},
            options={"page_size": 8},
            allow_loopback=True,
        )
        add_files(service, "erp", drop)
        service.close()
        (root / "partnersync.toml").write_text(
            f"""
[hub]
database = "{self.url}"

[sync]
lease_seconds = 2

[jobs.out]
entity = "orders"
sources = ["shop"]
targets = ["erp"]
schedule = {schedule}
"""
        )
        self.engine = create_engine(self.url.replace("postgresql://", "postgresql+psycopg://"))
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        """``partnersync ARGS`` in its own process."""
        return self.start_with({}, *args)

    def start_with(self, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
        """``partnersync ARGS`` in its own process, with more environment variables."""
        process = subprocess.Popen(
            [sys.executable, "-m", "partnersync", "-p", str(self.root), *args],
            env={**os.environ, "PARTNERSYNC_KEYS": self.keys, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def rows(self, sql: str) -> list[Any]:
        with self.engine.connect() as connection:
            return list(connection.execute(text(sql)))

    def wait_for(self, condition: Callable[[], Any], timeout: float = 30.0) -> Any:
        """The first truthy value of ``condition``, polled for up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.05)
        return value

    def exported(self) -> list[dict[str, Any]]:
        assert self.drop.directory is not None
        return [
            orjson.loads(line)
            for path in sorted((self.drop.directory / "orders-out").glob("*.jsonl"))
            for line in path.read_bytes().splitlines()
        ]

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.communicate()
        self.engine.dispose()
