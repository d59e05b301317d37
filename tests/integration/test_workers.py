"""Scaled out on PostgreSQL (RELIABILITY T19, T21): two schedulers and two `partnersync worker`
processes run a job list against one sandbox while the shop keeps changing; one worker is
SIGKILLed mid-job and the other finishes the job after the stall timeout. Checked from the run
history: no two runs of one account × entity × direction overlap, every order lands once, the
cursor ends at the shop's newest change."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import pytest

from tests.conftest import _fresh_pg_schema, _postgres_url
from tests.integration.unattended import World

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


def test_two_workers_and_two_schedulers_run_every_job_once_and_survive_a_killed_worker(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(latency=0.1, database_url=_fresh_pg_schema(_postgres_url()))
    shop, erp, rows, start = world.shop, world.drop, world.rows, world.start
    worker_args = ("worker", "--concurrency", "1", "--heartbeat", "1", "--stall-timeout", "3")
    workers = [start(*worker_args), start(*worker_args)]
    schedulers = [start("schedule", "run", "--executor", "workers") for _ in range(2)]

    def touch_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            shop.data.touch("orders", 3)
            time.sleep(0.4)

    touch_for(5)
    running = world.wait_for(
        lambda: rows("SELECT id, holder FROM job_runs WHERE status = 'running'"), 20
    )[0]
    killed_pid = int(running.holder.split(":")[1])
    victim = next(w for w in workers if w.pid == killed_pid)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    killed_at = datetime.now().astimezone()
    touch_for(8)
    time.sleep(4)  # the shop is quiet now: the next runs catch up with it
    for process in [*schedulers, *workers]:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in [*schedulers, *workers]:
        if process is victim:
            continue
        _, err = process.communicate(timeout=60)
        assert process.returncode == 0, err

    job_runs = rows("SELECT id, holder, status, started_at, finished_at FROM job_runs")
    killed = next(r for r in job_runs if r.id == running.id)
    assert killed.status == "abandoned"
    finished_after = [
        r
        for r in job_runs
        if r.status == "succeeded" and datetime.fromisoformat(r.started_at) > killed_at
    ]
    assert finished_after, "the surviving worker ran the job after the kill"
    assert all(str(killed_pid) != r.holder.split(":")[1] for r in finished_after)
    assert len(job_runs) >= 5

    runs = rows(
        "SELECT account, entity, direction, started_at, finished_at, status FROM runs "
        "ORDER BY started_at"
    )
    assert not [r for r in runs if r.status == "running"]
    by_scope: dict[tuple[str, str, str], list[Any]] = {}
    for run in runs:
        by_scope.setdefault((run.account, run.entity, run.direction), []).append(run)
    overlaps = 0
    for scope_runs in by_scope.values():
        for before, after in itertools.pairwise(scope_runs):
            if datetime.fromisoformat(before.finished_at) > datetime.fromisoformat(
                after.started_at
            ):
                overlaps += 1
    assert overlaps == 0

    orders = shop.data.tables["orders"]
    stored = rows("SELECT external_id FROM links WHERE account = 'shop' AND entity = 'orders'")
    (hub_orders,) = rows("SELECT count(*) FROM records WHERE entity = 'orders'")[0]
    assert hub_orders == len(orders)
    assert sorted(r.external_id for r in stored) == sorted(orders)
    (cursor,) = rows("SELECT value FROM cursors WHERE account = 'shop' AND entity = 'orders'")
    newest = max(datetime.fromisoformat(o["updatedAt"]) for o in orders.values())
    assert datetime.fromisoformat(cursor.value) == newest
    assert erp.directory is not None
    lines = [
        line
        for path in sorted((erp.directory / "orders-out").glob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]
    assert len(lines) == len(set(lines)), "no export written twice"
    assert {orjson.loads(line)["external_id"] for line in lines} == set(orders)
    print(
        f"two workers + two schedulers: {len(job_runs)} job runs, {len(runs)} runs, "
        f"overlaps 0, records {len(stored)}/{len(orders)}, one worker killed"
    )
