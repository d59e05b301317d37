"""Unattended runs: the daemon (`schedule run`) and cron mode, as real processes (RELIABILITY
T19 and T22): SIGTERM mid-page, a job longer than its interval, a suspended daemon, and
`sync run` called while the same job runs."""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from tests.integration.unattended import World

EXIT_ALREADY_RUNNING = 75


def _intervals(rows: list[Any]) -> list[tuple[datetime, datetime]]:
    return [
        (datetime.fromisoformat(r.started_at), datetime.fromisoformat(r.finished_at)) for r in rows
    ]


def _never_overlap(intervals: list[tuple[datetime, datetime]]) -> None:
    ordered = sorted(intervals)
    for (_, end), (start, _) in itertools.pairwise(ordered):
        assert end <= start, f"a run started at {start} before the previous ended at {end}"


def test_sigterm_mid_page_lets_the_page_commit_and_leaves_nothing_running(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(latency=0.25)  # 40 orders in pages of 8: a pull of ~2 s
    daemon = world.start("schedule", "run")
    world.wait_for(
        lambda: bool(
            world.rows(
                "SELECT id FROM runs WHERE direction = 'pull' AND pages >= 1 AND status = 'running'"
            )
        )
    )
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert (
        "stopping (SIGTERM)" in err
        or "stopping (SIGTERM)" in (world.root / "logs" / "partnersync.log").read_text()
    )
    runs = world.rows("SELECT status, pages, fetched FROM runs")
    assert not [r for r in runs if r.status == "running"]
    pull = world.rows("SELECT status, pages, fetched, error FROM runs WHERE direction = 'pull'")[0]
    assert pull.status == "interrupted"
    assert "stopped after a committed page (SIGTERM)" in pull.error  # not cancelled mid-page
    assert "cancelled" not in err
    # Nothing half-written: the hub holds exactly what the committed pages brought.
    (stored,) = world.rows("SELECT count(*) FROM records WHERE entity = 'orders'")[0]
    assert stored == pull.fetched > 0
    assert [r.status for r in world.rows("SELECT status FROM job_runs")] == ["interrupted"]

    rerun = world.start("sync", "run", "out")
    _, err = rerun.communicate(timeout=60)
    assert rerun.returncode == 0, err
    total = len(world.shop.data.tables["orders"])
    assert world.rows("SELECT count(*) FROM records WHERE entity = 'orders'")[0][0] == total
    exported = [line["external_id"] for line in world.exported()]
    assert sorted(exported) == sorted(world.shop.data.tables["orders"])  # each exactly once


def test_a_job_longer_than_its_interval_never_overlaps_itself(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(latency=0.25)  # each run of the job takes over a second
    world.shop.data.touch("orders", 40)
    daemon = world.start("schedule", "run")
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        world.shop.data.touch("orders", 8)  # there is always something new to pull
        time.sleep(0.5)
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    job_runs = world.rows("SELECT started_at, finished_at, status FROM job_runs ORDER BY id")
    assert len(job_runs) >= 3
    slow = [r for r in job_runs if r.status != "interrupted"]
    durations = [(e - s).total_seconds() for s, e in _intervals(slow)]
    assert max(durations) > 1.0, durations  # longer than the 1 s interval
    _never_overlap(_intervals(job_runs))
    for direction in ("pull", "push"):
        _never_overlap(
            _intervals(
                world.rows(
                    f"SELECT started_at, finished_at FROM runs WHERE direction = '{direction}' "
                    "AND account = 'shop' ORDER BY id"
                )
            )
        )


def test_a_suspended_daemon_runs_the_missed_job_once_when_resumed(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(schedule='{ every = "1s", misfire_grace_seconds = 60 }')
    daemon = world.start("schedule", "run")
    world.wait_for(
        lambda: len(world.rows("SELECT id FROM job_runs WHERE status != 'running'")) >= 2
    )
    world.wait_for(lambda: not world.rows("SELECT id FROM job_runs WHERE status = 'running'"))
    daemon.send_signal(signal.SIGSTOP)
    stopped_at = datetime.now().astimezone()
    time.sleep(5)  # five intervals missed
    (before,) = world.rows("SELECT count(*) FROM job_runs")[0]
    daemon.send_signal(signal.SIGCONT)
    resumed_at = datetime.now().astimezone()
    time.sleep(0.8)  # less than the next interval
    started = [
        datetime.fromisoformat(r.started_at)
        for r in world.rows("SELECT started_at FROM job_runs ORDER BY id")
    ]
    daemon.send_signal(signal.SIGTERM)
    _, err = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, err
    assert not [s for s in started if stopped_at < s < resumed_at]
    after_resume = [s for s in started if s >= resumed_at]
    assert len(started) == before + len(after_resume)
    assert len(after_resume) == 1, "the five missed fires run once, coalesced"


def test_cron_mode_exits_with_already_running_while_the_job_runs_elsewhere(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory(latency=0.2)
    first = world.start("sync", "run", "out")
    world.wait_for(
        lambda: bool(
            world.rows("SELECT scope FROM leases WHERE scope = 'job:out' AND released_at IS NULL")
        )
    )
    second = world.start("sync", "run", "out")
    _out, err = second.communicate(timeout=30)
    assert second.returncode == EXIT_ALREADY_RUNNING, err
    assert "already running" in err
    assert "job:out" in err
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    # The same account × entity × direction from another command is refused the same way.
    world.shop.faults.latency = 0.3
    third = world.start("sync", "pull", "shop", "orders", "--full")
    world.wait_for(
        lambda: bool(
            world.rows(
                "SELECT scope FROM leases WHERE scope = 'pull:shop:orders' AND released_at IS NULL"
            )
        )
    )
    fourth = world.start("sync", "run", "out")
    _, err = fourth.communicate(timeout=30)
    assert fourth.returncode == EXIT_ALREADY_RUNNING, err
    assert "pull:shop:orders" in err
    third.communicate(timeout=60)
    assert third.returncode == 0


def test_a_daemon_told_to_stop_while_starting_up_stops(
    world_factory: Callable[..., World],
) -> None:
    world = world_factory()
    for delay in (0.3, 0.6, 0.9):  # before, during and after the signal receiver starts
        daemon = world.start("schedule", "run", "--wait-first")
        time.sleep(delay)
        daemon.send_signal(signal.SIGTERM)
        _, err = daemon.communicate(timeout=20)
        assert daemon.returncode in (0, -signal.SIGTERM), err
