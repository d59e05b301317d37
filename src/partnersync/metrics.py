"""``/metrics`` in Prometheus' text format, from the daemon and the workers (prometheus-client).

Two sources: counters of this process (HTTP requests by host and status, throttled answers,
errors), and the hub itself, read at scrape time — runs by status, records, requests, dead
letters and lag per account and entity — so every process reports the same totals and a
restarted daemon loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, Counter, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from partnersync.sync.store.runs import cursor_lag

if TYPE_CHECKING:
    from partnersync.sync.store import HubStore

HTTP_REQUESTS = Counter(
    "partnersync_http_requests", "HTTP requests sent to platforms", ["host", "status"]
)
THROTTLED = Counter(
    "partnersync_throttled_answers", "Answers telling us to slow down (429, THROTTLED)", ["host"]
)
ERRORS = Counter(
    "partnersync_http_errors", "Requests that failed, by error class", ["host", "kind"]
)


class HubCollector(Collector):
    """Totals read from the hub at each scrape."""

    def __init__(self, store: HubStore) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        """One metric family per question an operator asks."""
        runs = CounterMetricFamily(
            "partnersync_runs",
            "Sync runs by account, entity, direction and status",
            labels=["account", "entity", "direction", "status"],
        )
        records = CounterMetricFamily(
            "partnersync_records_fetched",
            "Records read from platforms",
            labels=["account", "entity"],
        )
        requests = CounterMetricFamily(
            "partnersync_run_requests",
            "Requests spent by runs",
            labels=["account", "entity", "direction"],
        )
        letters = GaugeMetricFamily(
            "partnersync_dead_letters_open",
            "Records waiting in the dead-letter table",
            labels=["account", "entity"],
        )
        lag = GaugeMetricFamily(
            "partnersync_lag_seconds",
            "Now minus the incremental cursor",
            labels=["account", "entity"],
        )
        with self.store.engine.connect() as connection:
            for row in connection.execute(
                text(
                    "SELECT account, entity, direction, status, count(*) AS n, "
                    "sum(fetched) AS fetched, sum(requests) AS requests FROM runs "
                    "GROUP BY account, entity, direction, status"
                )
            ):
                runs.add_metric([row.account, row.entity, row.direction, row.status], row.n)
            for row in connection.execute(
                text(
                    "SELECT account, entity, direction, sum(fetched) AS fetched, "
                    "sum(requests) AS requests FROM runs GROUP BY account, entity, direction"
                )
            ):
                if row.direction == "pull":
                    records.add_metric([row.account, row.entity], row.fetched or 0)
                requests.add_metric([row.account, row.entity, row.direction], row.requests or 0)
            for row in connection.execute(
                text(
                    "SELECT account, entity, count(*) AS n FROM dead_letters "
                    "WHERE resolved_at IS NULL GROUP BY account, entity"
                )
            ):
                letters.add_metric([row.account, row.entity], row.n)
        now = datetime.now(UTC)
        for cursor in self.store.cursors.every():
            behind = cursor_lag(cursor["value"], now)
            if behind is not None:
                lag.add_metric([cursor["account"], cursor["entity"]], behind)
        yield from (runs, records, requests, letters, lag)


def serve_metrics(store: HubStore, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` from a background thread."""
    REGISTRY.register(HubCollector(store))
    start_http_server(port, addr=host)
