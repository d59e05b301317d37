"""Pull throughput: records per second from a loopback sandbox Shopify into a SQLite hub.

The sandbox runs in its own process (``partnersync sandbox serve``) so its CPU time can be read
from /proc and reported next to ours; a run where the sandbox used most of a core measured the
sandbox, not partnersync, and is flagged. The cost bucket is scaled up (``--restore-rate``) so
the figure is local overhead, not Shopify's rate limit; pass ``--restore-rate 100`` to see a
Standard-plan shop instead.

    python bench/pull_throughput.py --products 1000 --orders 1000
    python bench/pull_throughput.py --products 2000 --orders 2000 --restore-rate 100 --bulk never
    python bench/pull_throughput.py --products 2000 --orders 2000 --restore-rate 100 --bulk always

Each row also reports the query points the sandbox charged (read from its own request log),
per second, as a share of the restore rate (the permitted rate: 1.0 = every point Shopify
would restore was used), the throttled answers, and our process's peak RSS so far (run one
``--entities`` at a time to compare sizes, e.g. ``--products 10000`` against ``--products
200000``). ``--bulk always`` reads through a bulk operation instead of paging. Peers are
compared in ``bench/peers.py``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import orjson

from partnersync.auth.vault import Vault
from partnersync.cli.commands import settle_heap
from partnersync.config import Project, ProjectConfig
from partnersync.service import Partnersync

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def charged(log: Path, since: int) -> tuple[int, int, int]:
    """(lines read, points charged, throttled answers) in the sandbox's log after line
    ``since``."""
    lines = log.read_text().splitlines() if log.exists() else []
    points = throttled = 0
    for line in lines[since:]:
        entry = orjson.loads(line)
        # The bucket keeps the reservation when a query costs more than it asked for (no
        # negative refund), so what it was charged is the smaller of the two.
        points += min(int(entry.get("actual") or 0), int(entry.get("requested") or 0))
        throttled += bool(entry.get("throttled"))
    return len(lines), points, throttled


def shop_options(products: int, orders: int, restore_rate: float) -> list[str]:
    """``partnersync sandbox serve`` options for a shop of this size and restore rate."""
    return [
        "--products",
        str(products),
        "--orders",
        str(orders),
        "--restore-rate",
        str(restore_rate),
    ]


@contextlib.contextmanager
def sandbox_process(token: str, *options: str) -> Iterator[tuple[str, int]]:
    """``partnersync sandbox serve`` in its own process; yields (base URL, pid)."""
    server = subprocess.Popen(
        [sys.executable, "-m", "partnersync", "sandbox", "serve", "--token", token, *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)
        if url is None:
            raise SystemExit(f"sandbox did not start: {line!r}")
        yield url.group(0), server.pid
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--restore-rate", type=float, default=1_000_000.0)
    parser.add_argument("--bulk", choices=("auto", "always", "never"), default="never")
    parser.add_argument(
        "--entities",
        default="products,inventory,orders",
        help="comma-separated; one entity alone makes the peak RSS that entity's",
    )
    args = parser.parse_args()

    token = secrets.token_urlsafe(16)
    options = shop_options(args.products, args.orders, args.restore_rate)
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(token, *options, "--log", f"{tmp}/sandbox.jsonl") as (url, pid),
    ):
        log = Path(tmp) / "sandbox.jsonl"
        key = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
        project = Project(Path(tmp), ProjectConfig(), f"sqlite:///{tmp}/hub.db")
        service = Partnersync(project, vault=Vault.parse(key))
        service.add_account(
            name="bench",
            platform="shopify",
            base_url=url,
            secrets={"access_token": token},
            options={"bulk": args.bulk, "bulk_poll_seconds": 0.5},
            allow_loopback=True,
        )
        print(f"cores: {os.cpu_count()}, restore rate: {args.restore_rate:g}, bulk: {args.bulk}")
        print(
            f"{'entity':<10} {'records':>8} {'seconds':>8} {'rec/s':>8} {'requests':>8} "
            f"{'ours cpu':>9} {'sandbox cpu':>11} {'pts/s÷rate':>10} {'throttled':>9} "
            f"{'peak RSS':>9}"
        )
        rows = []
        settle_heap()  # as the CLI does once its service is open
        for entity in args.entities.split(","):
            read, _, _ = charged(log, 0)
            sandbox_before = cpu_seconds(pid)
            ours_before = time.process_time()
            started = time.perf_counter()
            summary = anyio.run(service.pull, "bench", entity)
            wall = time.perf_counter() - started
            ours = time.process_time() - ours_before
            theirs = cpu_seconds(pid) - sandbox_before
            records = summary.progress.fetched
            _, points, throttled = charged(log, read)
            flag = "  (sandbox-bound: invalid)" if theirs > 0.8 * wall else ""
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            rows.append(
                {
                    "entity": entity,
                    "records": records,
                    "seconds": round(wall, 2),
                    "requests": summary.progress.requests,
                    "ours_cpu_s": round(ours, 2),
                    "sandbox_cpu_s": round(theirs, 2),
                    "points_per_s_over_rate": round(points / wall / args.restore_rate, 2),
                    "throttled": throttled,
                    "peak_rss_mib": peak,
                }
            )
            print(
                f"{entity:<10} {records:>8} {wall:>8.2f} {records / wall:>8.0f} "
                f"{summary.progress.requests:>8} {ours:>8.2f}s {theirs:>10.2f}s "
                f"{points / wall / args.restore_rate:>10.2f} {throttled:>9} "
                f"{peak:>5} MiB{flag}"
            )
        service.close()
    setup = {"cores": os.cpu_count(), "restore_rate": args.restore_rate, "bulk": args.bulk}
    (Path(__file__).parent / "pull_throughput.json").write_text(
        json.dumps({**setup, "rows": rows}, indent=2)
    )


if __name__ == "__main__":
    main()
