"""Many accounts: one incremental cycle over N sandbox shops with M changed orders each, every
request slowed by injected latency (a real network), through the job a brand with many shops
runs — orders of every shop pulled into the hub and exported to the ERP's file drop.

    python bench/many_accounts.py --shops 500 --orders 200 --latency 0.1

The shops live in one separate process (each its own loopback server, bucket and data), so
their CPU time is read apart from ours. A baseline pull reads one changed order a shop (which
sets each cursor), then M orders change on every shop and the incremental cycle runs: wall time, the
slowest account's lag (cycle start → its pull committed), the median lag, orders landed,
requests, our CPU and the shops' CPU. ``--concurrent-pulls`` sets how many of the job's sources
are pulled at once (the project's ``sync.concurrent_pulls``). Writes
``bench/many_accounts.json``.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx

from partnersync.auth.vault import Vault
from partnersync.cli.commands import settle_heap
from partnersync.config import JobConfig, Project, ProjectConfig, SyncConfig
from partnersync.service import Partnersync

sys.path.insert(0, str(Path(__file__).parent))
from pull_throughput import cpu_seconds

HERE = Path(__file__).parent


def serve_shops(count: int, orders: int, latency: float, token: str) -> None:
    """The shops' process: start ``count`` sandbox shops, print their URLs, serve until stdin
    closes."""
    from partnersync.sandbox.shopify import ShopifySandbox

    shops = []
    for _ in range(count):
        shop = ShopifySandbox(token=token, products=1, orders=orders).start()
        shop.faults.latency = latency
        shops.append(shop)
    settle_heap()  # as `partnersync sandbox serve` does once its shop is generated
    print(json.dumps([shop.url for shop in shops]), flush=True)
    sys.stdin.read()


def committed(service: Partnersync, run_id: int) -> datetime:
    """When a run finished (its last page committed)."""
    row = service.store.runs.get(run_id) or {}
    moment = datetime.fromisoformat(str(row["finished_at"]))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def touch_all(urls: list[str], orders: int) -> None:
    """Change ``orders`` orders on every shop (control requests carry no latency)."""
    with httpx.Client(timeout=60) as http:
        for url in urls:
            http.post(f"{url}/_sandbox/touch", json={"entity": "orders", "count": orders})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shops", type=int, default=500)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrent-pulls", type=int, default=SyncConfig().concurrent_pulls)
    parser.add_argument("--serve-shops", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_shops:
        serve_shops(args.shops, args.orders, args.latency, args.token)
        return

    token = secrets.token_urlsafe(16)
    host = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--serve-shops",
            "--shops",
            str(args.shops),
            "--orders",
            str(args.orders),
            "--latency",
            str(args.latency),
            "--token",
            token,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert host.stdout is not None
    assert host.stdin is not None
    urls: list[str] = json.loads(host.stdout.readline())
    names = [f"shop{i:04d}" for i in range(len(urls))]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            drop = Path(tmp) / "erp"
            drop.mkdir()
            job = JobConfig(entity="orders", sources=names, targets=["erp"])
            config = ProjectConfig(
                sync=SyncConfig(concurrent_pulls=args.concurrent_pulls),
                jobs={"orders-to-erp": job},
            )
            key = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
            project = Project(Path(tmp), config, f"sqlite:///{tmp}/hub.db")
            service = Partnersync(project, vault=Vault.parse(key))
            for name, url in zip(names, urls, strict=True):
                service.add_account(
                    name=name,
                    platform="shopify",
                    base_url=url,
                    secrets={"access_token": token},
                    allow_loopback=True,
                )
            service.add_account(name="erp", platform="file", base_url=drop.as_uri(), secrets={})

            # Baseline: one changed order a shop, pulled from a moment ago, sets each cursor.
            touch_all(urls, 1)

            async def baseline() -> None:
                now = datetime.now(UTC) - timedelta(seconds=5)
                limiter = anyio.CapacityLimiter(args.concurrent_pulls)

                async def one(name: str) -> None:
                    async with limiter:
                        await service.pull(name, "orders", since=now)

                async with anyio.create_task_group() as group:
                    for name in names:
                        group.start_soon(one, name)

            anyio.run(baseline)
            touch_all(urls, args.orders)
            time.sleep(1.1)  # the changes are older than the cycle's start

            settle_heap()  # as the CLI does once its service is open
            ours_before, theirs_before = time.process_time(), cpu_seconds(host.pid)
            started_at = datetime.now(UTC)
            started = time.perf_counter()
            results = anyio.run(service.run_job, "orders-to-erp")
            wall = time.perf_counter() - started
            ours = time.process_time() - ours_before
            theirs = cpu_seconds(host.pid) - theirs_before

            pulls = [r for r in results if getattr(r, "account", None) in set(names)]
            lags = sorted(
                (committed(service, p.run_id) - started_at).total_seconds() for p in pulls
            )
            landed = sum(p.progress.fetched for p in pulls)
            requests = sum(p.progress.requests for p in pulls)
            failed = [p.account for p in pulls if p.status != "succeeded"]
            service.close()
    finally:
        host.stdin.close()
        host.wait(timeout=30)

    row: dict[str, Any] = {
        "cores": os.cpu_count(),
        "shops": args.shops,
        "orders_per_shop": args.orders,
        "latency_s": args.latency,
        "concurrent_pulls": args.concurrent_pulls,
        "wall_s": round(wall, 1),
        "slowest_lag_s": round(lags[-1], 1),
        "median_lag_s": round(statistics.median(lags), 1),
        "orders_landed": landed,
        "orders_expected": args.shops * args.orders,
        "requests": requests,
        "ours_cpu_s": round(ours, 1),
        "shops_cpu_s": round(theirs, 1),
        "failed_accounts": failed,
    }
    print(
        f"cores: {row['cores']}; {args.shops} shops × {args.orders} changed orders; "
        f"{args.latency * 1000:.0f} ms latency; {args.concurrent_pulls} pulls at once"
    )
    for key, value in row.items():
        print(f"  {key:<17} {value}")
    (HERE / "many_accounts.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
