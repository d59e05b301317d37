"""Inventory push throughput: a stock file for every SKU of a sandbox shop, pushed once, then again.

The sandbox runs in its own process (``partnersync sandbox serve``). The shop is read with the
cost bucket scaled up; for the pushes the bucket is set to ``--restore-rate`` (default: still
scaled up, so the figure is local overhead plus the sandbox; ``--restore-rate 100`` is a
Standard shop), and each row reports the points the bucket was charged per second as a share of
that rate, and the throttled answers (from the sandbox's own log).

    python bench/push_inventory.py --products 1000
    python bench/push_inventory.py --products 1350 --restore-rate 100   # ~10k levels
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

from partnersync.auth.vault import Vault
from partnersync.cli.commands import settle_heap
from partnersync.config import Project, ProjectConfig
from partnersync.sandbox.files import FileSandbox
from partnersync.service import Partnersync
from partnersync.sync.push import PushOptions

sys.path.insert(0, str(Path(__file__).parent))
from pull_throughput import charged, cpu_seconds, sandbox_process, shop_options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--restore-rate", type=float, default=1_000_000.0)
    args = parser.parse_args()
    token = secrets.token_urlsafe(16)
    options = shop_options(args.products, 1, 1_000_000)
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(token, *options, "--log", f"{tmp}/sandbox.jsonl") as (url, pid),
    ):
        root = Path(tmp)
        log = root / "sandbox.jsonl"
        key = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        service = Partnersync(
            Project(root, ProjectConfig(), f"sqlite:///{root}/hub.db"), vault=Vault.parse(key)
        )
        service.add_account(
            name="shop",
            platform="shopify",
            base_url=url,
            secrets={"access_token": token},
            allow_loopback=True,
        )
        drop = FileSandbox(directory=root / "drop", skus=0, files=0).start()
        service.add_account(name="erp", platform="file", base_url=str(drop.directory), secrets={})
        anyio.run(service.pull, "shop", "inventory")
        levels = service.store.records.of("shop", "inventory")
        drop.write(
            "inventory/stock.csv",
            [
                {
                    "sku": r.data["sku"],
                    "location": r.data["location_name"],
                    "available": (n * 7) % 50 + 3,
                }
                for n, r in enumerate(levels)
            ],
        )
        anyio.run(service.pull, "erp", "inventory")
        options = PushOptions(sources=("erp",), buffer=2, force=True)
        httpx.post(f"{url}/_sandbox/limits", json={"restore_rate": args.restore_rate})
        print(f"cores: {os.cpu_count()}, restore rate for the pushes: {args.restore_rate:g}")
        print(
            f"{'push':<8} {'levels':>7} {'writes':>7} {'seconds':>8} {'writes/s':>9} "
            f"{'requests':>8} {'ours cpu':>9} {'sandbox cpu':>11} {'pts/s÷rate':>10} "
            f"{'throttled':>9}"
        )
        rows = []
        for label in ("first", "again"):
            read, _, _ = charged(log, 0)
            settle_heap()  # as the CLI does once its service is open
            sandbox_before, ours_before = cpu_seconds(pid), time.process_time()
            started = time.perf_counter()
            summary = anyio.run(lambda: service.push("shop", "inventory", options))
            wall = time.perf_counter() - started
            _, points, throttled = charged(log, read)
            ours, theirs = time.process_time() - ours_before, cpu_seconds(pid) - sandbox_before
            rows.append(
                {
                    "push": label,
                    "levels": len(levels),
                    "writes": summary.updated,
                    "seconds": round(wall, 2),
                    "requests": summary.requests,
                    "ours_cpu_s": round(ours, 2),
                    "sandbox_cpu_s": round(theirs, 2),
                    "points_per_s_over_rate": round(points / wall / args.restore_rate, 2),
                    "throttled": throttled,
                }
            )
            print(
                f"{label:<8} {len(levels):>7} {summary.updated:>7} {wall:>8.2f} "
                f"{summary.updated / wall:>9.0f} {summary.requests:>8} "
                f"{ours:>8.2f}s {theirs:>10.2f}s "
                f"{points / wall / args.restore_rate:>10.2f} {throttled:>9}"
            )
        service.close()
    (Path(__file__).parent / "push_inventory.json").write_text(
        json.dumps(
            {"cores": os.cpu_count(), "restore_rate": args.restore_rate, "rows": rows}, indent=2
        )
    )


if __name__ == "__main__":
    main()
