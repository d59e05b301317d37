"""Does a real, independent Shopify client sync from our sandbox? The Singer tap-shopify 3.13.0
(its own virtualenv; ``pip install tap-shopify==3.13.0``) runs discovery, selects every field of
products, product variants, inventory items, inventory levels, locations, customers and orders,
and syncs them from one sandbox shop at the tap's default page size (250). Each stream's record
count is compared with what the shop holds (counted by paging its GraphQL connections here).

    python bench/tap_fidelity.py --tap-python /path/to/tap-venv/bin/python --products 200

Prints a table (stream, sandbox, tap, equal) and the sandbox's refusals, writes
``bench/tap_fidelity.json``, and exits 1 when any stream differs.
"""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from pull_throughput import sandbox_process, shop_options

HERE = Path(__file__).parent
STREAMS = (
    "products",
    "product_variants",
    "inventory_items",
    "inventory_levels",
    "locations",
    "customers",
    "orders",
)
CONNECTIONS = {
    "products": "products",
    "product_variants": "productVariants",
    "inventory_items": "inventoryItems",
    "locations": "locations",
    "customers": "customers",
    "orders": "orders",
}


def shop_counts(url: str, token: str) -> dict[str, int]:
    """Records per stream as the shop holds them, by paging each connection to its end."""
    endpoint = f"{url}/admin/api/2025-07/graphql.json"
    headers = {"X-Shopify-Access-Token": token}
    counts: dict[str, int] = {}
    with httpx.Client(headers=headers, timeout=60) as http:

        def walk(root: str, selection: str) -> list[dict[str, Any]]:
            nodes: list[dict[str, Any]] = []
            after = None
            while True:
                query = (
                    f"query($after: String) {{ {root}(first: 250, after: $after) "
                    f"{{ pageInfo {{ hasNextPage endCursor }} nodes {{ {selection} }} }} }}"
                )
                body = http.post(endpoint, json={"query": query, "variables": {"after": after}})
                connection = body.json()["data"][root]
                nodes.extend(connection["nodes"])
                if not connection["pageInfo"]["hasNextPage"]:
                    return nodes
                after = connection["pageInfo"]["endCursor"]

        for stream, root in CONNECTIONS.items():
            counts[stream] = len(walk(root, "id"))
        items = walk("inventoryItems", "inventoryLevels(first: 250) { nodes { id } }")
        counts["inventory_levels"] = sum(len(i["inventoryLevels"]["nodes"]) for i in items)
    return counts


def run_tap(python: str, url: str, token: str, work: Path) -> tuple[Counter[str], str, int]:
    """Discover, select every field of STREAMS, sync; (records per stream, stderr tail, code)."""
    config = work / "tap_config.json"
    config.write_text(
        json.dumps({"shop": "sandbox-shop", "access_token": token, "start_date": "2020-01-01"})
    )
    launcher = [python, str(HERE / "tap_shopify_launcher.py"), url, "--config", str(config)]
    found = subprocess.run([*launcher, "--discover"], capture_output=True, text=True, check=True)
    catalog = json.loads(found.stdout)
    for stream in catalog["streams"]:
        chosen = stream["tap_stream_id"] in STREAMS
        for entry in stream["metadata"]:
            if entry["breadcrumb"] == [] or entry["metadata"].get("inclusion") != "unsupported":
                entry["metadata"]["selected"] = chosen
    selected = work / "tap_catalog.json"
    selected.write_text(json.dumps(catalog))
    synced = subprocess.run([*launcher, "--catalog", str(selected)], capture_output=True, text=True)
    records: Counter[str] = Counter()
    for line in synced.stdout.splitlines():
        if line.startswith('{"type": "RECORD"'):
            records[json.loads(line)["stream"]] += 1
    return records, "\n".join(synced.stderr.splitlines()[-5:]), synced.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tap-python", required=True)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--json", type=Path, default=HERE / "tap_fidelity.json")
    args = parser.parse_args()
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "sandbox.jsonl"
        options = shop_options(args.products, args.orders, 100.0)  # a Standard shop
        with sandbox_process(token, *options, "--log", str(log)) as (url, _):
            expected = shop_counts(url, token)
            records, stderr, code = run_tap(args.tap_python, url, token, Path(tmp))
        refused = Counter(
            entry.get("error")
            for entry in map(json.loads, log.read_text().splitlines())
            if entry.get("error")
        )
    rows = [
        {"stream": s, "sandbox": expected[s], "tap": records[s], "equal": expected[s] == records[s]}
        for s in STREAMS
    ]
    print(f"tap-shopify 3.13.0 against a sandbox of {args.products} products, {args.orders} orders")
    print(f"{'stream':<18} {'sandbox':>8} {'tap':>8}  equal")
    for row in rows:
        print(f"{row['stream']:<18} {row['sandbox']:>8} {row['tap']:>8}  {row['equal']}")
    print(f"tap exit code {code}; sandbox refusals: {dict(refused) or 'none'}")
    if code:
        print(stderr)
    args.json.write_text(
        json.dumps({"rows": rows, "exit_code": code, "refusals": dict(refused)}, indent=2)
    )
    sys.exit(0 if code == 0 and all(r["equal"] for r in rows) else 1)


if __name__ == "__main__":
    main()
