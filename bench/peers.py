"""Side by side: partnersync, dlt's ``rest_api`` source and the Singer tap-shopify reading the
same products and orders from one sandbox shop process, back to back, each in its own process.

    python bench/peers.py --products 2000 --orders 2000 \
        --dlt-python /path/to/dlt-venv/bin/python --tap-python /path/to/tap-venv/bin/python

dlt (``pip install 'dlt[duckdb]==1.31.*'``) reads the legacy REST ``products.json`` /
``orders.json`` into DuckDB; tap-shopify (``pip install tap-shopify==3.13.0``) reads GraphQL
into a null sink through ``bench/tap_shopify_launcher.py`` (which only redirects its host);
partnersync pulls into SQLite. Each row: wall time, records/s, the contender's peak RSS (from
``wait4``), the requests and throttled answers the sandbox logged, and the sandbox's CPU. A
run counts only if every record arrived; otherwise the row says what failed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).parent))
from pull_throughput import cpu_seconds, sandbox_process, shop_options

HERE = Path(__file__).parent

DLT_SCRIPT = """
import sys, dlt
from dlt.sources.rest_api import rest_api_source
base, token, workdir = sys.argv[1], sys.argv[2], sys.argv[3]
source = rest_api_source({
    "client": {"base_url": f"{base}/admin/api/2025-07/",
               "headers": {"X-Shopify-Access-Token": token},
               "paginator": {"type": "header_link"}},
    "resource_defaults": {"endpoint": {"params": {"limit": 250}}},
    "resources": [
        {"name": "products", "endpoint": {"path": "products.json", "data_selector": "products"}},
        {"name": "orders", "endpoint": {"path": "orders.json", "data_selector": "orders",
                                         "params": {"status": "any"}}},
    ],
})
pipeline = dlt.pipeline(pipeline_name="bench", destination=dlt.destinations.duckdb(
    f"{workdir}/dlt.duckdb"), dataset_name="shop", pipelines_dir=f"{workdir}/pipelines")
pipeline.run(source)
with pipeline.sql_client() as client:
    counts = [client.execute_sql(f"select count(*) from {t}")[0][0] for t in ("products", "orders")]
    print(sum(counts))
"""


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[int, float, int, str]:
    """Run ``command``; (exit code, wall seconds, its own peak RSS in MiB from ``wait4``, its
    stdout). Its stderr goes to a file (a full pipe would stall it)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, env={**os.environ, **(env or {})}
        )
        assert process.stdout is not None
        out = process.stdout.read().decode()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    return process.returncode, wall, usage.ru_maxrss // 1024, out


def logged(log: Path, since: int) -> tuple[int, int, int]:
    lines = log.read_text().splitlines() if log.exists() else []
    entries = [orjson.loads(line) for line in lines[since:]]
    return (
        len(lines),
        len(entries),
        sum(bool(e.get("throttled")) or e.get("status") == 429 for e in entries),
    )


PEAK: dict[str, int] = {}
"""The largest peak RSS of any process of the contender being measured."""


def partnersync(url: str, token: str, work: Path) -> tuple[int, float, str]:
    project = work / "partnersync"
    cli = [sys.executable, "-m", "partnersync", "-p", str(project)]
    subprocess.run(
        [sys.executable, "-m", "partnersync", "init", str(project)], check=True, capture_output=True
    )
    subprocess.run(
        [
            *cli,
            "accounts",
            "add",
            "bench",
            "--platform",
            "shopify",
            "--url",
            url,
            "--secret-env",
            "access_token=BENCH_TOKEN",
            "--allow-loopback",
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "BENCH_TOKEN": token},
    )
    total, wall = 0, 0.0
    for entity in ("products", "orders"):
        code, seconds, rss, out = run([*cli, "sync", "pull", "bench", entity, "--json"])
        PEAK["now"] = max(PEAK.get("now", 0), rss)
        wall += seconds
        if code != 0:
            return 0, wall, f"exit {code}"
        total += int(json.loads(out)[0]["fetched"])
    return total, wall, ""


def dlt(python: str, url: str, token: str, work: Path) -> tuple[int, float, str]:
    script = work / "dlt_run.py"
    script.write_text(DLT_SCRIPT)
    code, wall, rss, out = run([python, str(script), url, token, str(work)])
    PEAK["now"] = rss
    if code != 0:
        return 0, wall, f"exit {code}"
    return int(out.strip().splitlines()[-1]), wall, ""


def tap(python: str, url: str, token: str, work: Path, per_page: int) -> tuple[int, float, str]:
    config = work / "tap_config.json"
    config.write_text(
        json.dumps(
            {
                "shop": "sandbox-shop",
                "access_token": token,
                "start_date": "2020-01-01T00:00:00Z",
                "results_per_page": per_page,
            }
        )
    )
    launcher = [python, str(HERE / "tap_shopify_launcher.py"), url, "--config", str(config)]
    code, _, _, out = run([*launcher, "--discover"])
    if code != 0:
        return 0, 0.0, "discovery failed"
    catalog = json.loads(out)
    for stream in catalog["streams"]:
        chosen = stream["tap_stream_id"] in ("products", "orders")
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == [] or (
                chosen and entry["metadata"].get("inclusion") != "unsupported"
            ):
                entry["metadata"]["selected"] = chosen
    selected = work / "tap_catalog.json"
    selected.write_text(json.dumps(catalog))
    code, wall, rss, out = run([*launcher, "--catalog", str(selected)])
    PEAK["now"] = rss
    records = sum(1 for line in out.splitlines() if line.startswith('{"type": "RECORD"'))
    return records, wall, "" if code == 0 else f"exit {code} after {records} records"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1000)
    parser.add_argument("--orders", type=int, default=1000)
    parser.add_argument("--restore-rate", type=float, default=1_000_000.0)
    parser.add_argument("--dlt-python")
    parser.add_argument("--tap-python")
    parser.add_argument(
        "--tap-per-page",
        type=int,
        default=250,
        help="tap-shopify's results_per_page (250, its own default)",
    )
    args = parser.parse_args()
    token = secrets.token_urlsafe(16)
    expected = args.products + args.orders
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(
            token,
            *shop_options(args.products, args.orders, args.restore_rate),
            "--log",
            f"{tmp}/sandbox.jsonl",
        ) as (url, pid),
    ):
        log = Path(tmp) / "sandbox.jsonl"
        contenders = [("partnersync", lambda w: partnersync(url, token, w))]
        if args.dlt_python:
            contenders.append(("dlt rest_api", lambda w: dlt(args.dlt_python, url, token, w)))
        if args.tap_python:
            contenders.append(
                ("tap-shopify", lambda w: tap(args.tap_python, url, token, w, args.tap_per_page))
            )
        for name, contender in contenders:
            work = Path(tmp) / name.replace(" ", "_")
            work.mkdir()
            before, _, _ = logged(log, 0)
            sandbox_before = cpu_seconds(pid)
            PEAK["now"] = 0
            records, wall, failure = contender(work)
            _, requests, throttled = logged(log, before)
            complete = records == expected and not failure
            rows.append(
                {
                    "contender": name,
                    "records": records,
                    "complete": complete,
                    "seconds": round(wall, 2),
                    "records_per_s": round(records / wall) if wall else 0,
                    "peak_rss_mib": PEAK["now"],
                    "requests": requests,
                    "throttled": throttled,
                    "sandbox_cpu_s": round(cpu_seconds(pid) - sandbox_before, 2),
                    "note": failure,
                }
            )
    print(
        f"cores: {os.cpu_count()}; {args.products} products + {args.orders} orders; "
        f"restore rate {args.restore_rate:g}"
    )
    print(
        f"{'contender':<13} {'records':>7} {'seconds':>8} {'rec/s':>7} {'peak RSS':>9} "
        f"{'requests':>8} {'throttled':>9} {'sandbox cpu':>11}  note"
    )
    for row in rows:
        note = row["note"] or ("" if row["complete"] else "incomplete: does not count")
        print(
            f"{row['contender']:<13} {row['records']:>7} {row['seconds']:>8} "
            f"{row['records_per_s']:>7} {row['peak_rss_mib']:>6} MiB {row['requests']:>8} "
            f"{row['throttled']:>9} {row['sandbox_cpu_s']:>10}s  {note}"
        )
    (HERE / "peers.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
