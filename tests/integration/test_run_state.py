"""Run state a user can trust, as a new user meets it: Ctrl-C and SIGTERM during `sync pull`,
a process paused past its lease (fencing), and `status`, `doctor` and `/metrics` telling what
happened."""

from __future__ import annotations

import json
import signal
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.served import free_port
from tests.integration.unattended import World

EXIT_INTERRUPTED = 130


def _after_first_page(world: World) -> None:
    world.wait_for(
        lambda: bool(world.rows("SELECT id FROM runs WHERE pages >= 1 AND status = 'running'"))
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_pull_says_what_it_kept_and_the_next_run_resumes(
    world_factory: Callable[..., World], signum: signal.Signals
) -> None:
    world = world_factory(latency=0.25)
    pull = world.start("sync", "pull", "shop", "orders")
    _after_first_page(world)
    pull.send_signal(signum)
    _, err = pull.communicate(timeout=30)
    assert pull.returncode == EXIT_INTERRUPTED, err
    if signum == signal.SIGINT:
        assert "pages already committed are kept (shop/orders: " in err
        assert "run the same command again to resume" in err
    listed = world.start("runs", "list", "--json")
    out, _ = listed.communicate(timeout=30)
    (run,) = json.loads(out)
    assert run["status"] == "interrupted"  # not "running" forever
    assert run["pages"] >= 1
    (kept,) = world.rows("SELECT count(*) FROM records WHERE entity = 'orders'")[0]
    assert kept == run["fetched"]

    world.shop.faults.latency = 0
    again = world.start("sync", "pull", "shop", "orders")
    _, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert f"resumed after run {run['id']} (interrupted)" in err
    total = len(world.shop.data.tables["orders"])
    assert world.rows("SELECT count(*) FROM records WHERE entity = 'orders'")[0][0] == total


def test_a_paused_process_is_fenced_out_and_writes_nothing_after_its_lease_passed_on(
    world_factory: Callable[..., World], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RELIABILITY T19: a run SIGSTOPped past its lease comes back to find a successor has
    taken over; its next page commit is refused, and it writes nothing at all (SQLite and
    PostgreSQL)."""
    # Paused inside a transaction, it would hold the lease row's lock on PostgreSQL until the
    # server ends its idle session (here after 3 s; 30 s by default).
    monkeypatch.setenv("PARTNERSYNC_PG_IDLE_TIMEOUT", "3")
    world = world_factory(latency=0.3, database_url=database_url)
    stale = world.start("sync", "pull", "shop", "orders", "--full")
    _after_first_page(world)
    stale.send_signal(signal.SIGSTOP)
    (stale_run,) = world.rows("SELECT id, pages, fetched FROM runs")
    time.sleep(2.5)  # the lease (2 s) expires without heartbeats
    world.shop.faults.latency = 0
    successor = world.start("sync", "pull", "shop", "orders", "--full")
    _, err = successor.communicate(timeout=60)
    assert successor.returncode == 0, err
    before = world.rows("SELECT * FROM records ORDER BY id")
    cursor_before = world.rows("SELECT * FROM cursors")
    stale.send_signal(signal.SIGCONT)
    _, err = stale.communicate(timeout=60)
    assert stale.returncode != 0
    assert "taken over" in err
    assert world.rows("SELECT * FROM records ORDER BY id") == before
    assert world.rows("SELECT * FROM cursors") == cursor_before
    (after,) = world.rows(f"SELECT status, pages, fetched FROM runs WHERE id = {stale_run.id}")
    assert after.status == "abandoned"
    assert (after.pages, after.fetched) == (stale_run.pages, stale_run.fetched)
    epochs = world.rows("SELECT epoch FROM runs ORDER BY id")
    assert [e.epoch for e in epochs] == [1, 2]


def test_status_doctor_and_metrics_tell_what_happened(
    world_factory: Callable[..., World], tmp_path: Path
) -> None:
    world = world_factory()
    run = world.start("sync", "run", "out")
    _, err = run.communicate(timeout=60)
    assert run.returncode == 0, err

    status = world.start("status", "--json")
    out, err = status.communicate(timeout=30)
    assert status.returncode == 0, err
    report = json.loads(out)
    streams = {(s["account"], s["entity"], s["direction"]): s for s in report["streams"]}
    pull = streams[("shop", "orders", "pull")]
    assert pull["status"] == "succeeded"
    assert pull["lag_seconds"] is not None
    assert pull["lag_seconds"] >= 0
    assert streams[("erp", "orders", "push")]["status"] == "succeeded"
    (job,) = report["jobs"]
    assert (job["job"], job["last_status"], job["schedule"]) == ("out", "succeeded", "every 1s")
    assert job["next_run"] is not None
    assert report["running"] == []

    doctor = world.start("doctor", "--json")
    out, err = doctor.communicate(timeout=60)
    assert doctor.returncode == 0, err
    checks = {c["check"]: c for c in json.loads(out)}
    assert all(c["ok"] for c in checks.values())
    assert {"database", "key", "account shop", "account erp", "drop erp"} <= set(checks)
    port = free_port()
    daemon = world.start("schedule", "run", "--wait-first", "--metrics-port", str(port))
    body = ""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as page:
                body = page.read().decode()
            break
        except OSError:
            time.sleep(0.1)
    daemon.send_signal(signal.SIGTERM)
    daemon.communicate(timeout=30)
    assert daemon.returncode == 0
    assert (
        'partnersync_runs_total{account="shop",direction="pull",entity="orders",'
        'status="succeeded"} 1.0'
    ) in body
    assert 'partnersync_lag_seconds{account="shop",entity="orders"}' in body
    assert 'partnersync_records_fetched_total{account="shop",entity="orders"} 40.0' in body

    world.shop.stop()  # the shop is gone: doctor says so, and what to do
    doctor = world.start("doctor", "--json")
    out, _ = doctor.communicate(timeout=120)
    assert doctor.returncode == 1
    broken = {c["check"]: c for c in json.loads(out)}["account shop"]
    assert not broken["ok"]
    assert "partnersync accounts test shop" in broken["fix"]

    # SIGTERM while a job retries a platform that is down: after the grace it is cancelled,
    # the daemon exits 0 and the run says "interrupted".
    daemon = world.start("schedule", "run", "--shutdown-grace", "1")
    world.wait_for(lambda: bool(world.rows("SELECT id FROM job_runs WHERE status = 'running'")))
    daemon.send_signal(signal.SIGTERM)
    started = time.monotonic()
    _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert time.monotonic() - started < 10
    assert "cancelling them" in err
    last = world.rows("SELECT status FROM job_runs ORDER BY id DESC LIMIT 1")[0]
    assert last.status == "interrupted"
    assert not world.rows("SELECT id FROM runs WHERE status = 'running'")


def test_json_logs_carry_the_run_id(world_factory: Callable[..., World]) -> None:
    world = world_factory()
    pull = world.start("sync", "pull", "shop", "orders")
    pull.communicate(timeout=60)
    assert pull.returncode == 0
    assert _json_lines(world) == []  # plain text unless asked
    world.shop.data.touch("orders", 3)
    pull = world.start_with({"PARTNERSYNC_LOG_FORMAT": "json"}, "sync", "pull", "shop", "orders")
    pull.communicate(timeout=60)
    assert pull.returncode == 0
    in_run = [line for line in _json_lines(world) if "run_id" in line]
    assert in_run
    assert {line["run_id"] for line in in_run} == {2}
    assert any(line["message"].startswith("run 2 shop/orders succeeded") for line in in_run)


def _json_lines(world: World) -> list[dict[str, object]]:
    log = (world.root / "logs" / "partnersync.log").read_text()
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]
