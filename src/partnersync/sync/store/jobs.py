"""Job runs: each run of a project-file job, with how it ended (for ``schedule list``,
``status`` and the overlap checks of the scheduler's tests)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update

from partnersync.sync.store.unit import Repository, _job_runs, utcnow_iso


class JobRunRepository(Repository):
    """Start, finish and list job runs."""

    def start(self, job: str, *, holder: str, trigger: str) -> int:
        """Record a job run as ``running``; returns its id."""
        with self.uow.transaction(unfenced=True) as connection:
            result = connection.execute(
                _job_runs.insert().returning(_job_runs.c.id),
                [
                    {
                        "job": job,
                        "holder": holder,
                        "trigger": trigger,
                        "status": "running",
                        "started_at": utcnow_iso(),
                    }
                ],
            )
            return int(result.scalar_one())

    def finish(
        self, job_run_id: int, *, status: str, run_ids: list[int], error: str | None = None
    ) -> None:
        """Close a job run with the worst status of its runs."""
        with self.uow.transaction(unfenced=True) as connection:
            connection.execute(
                update(_job_runs)
                .where(_job_runs.c.id == job_run_id, _job_runs.c.status == "running")
                .values(
                    status=status,
                    finished_at=utcnow_iso(),
                    runs=",".join(str(r) for r in run_ids),
                    error=error,
                )
            )

    def latest_by_job(self) -> dict[str, dict[str, Any]]:
        """The newest run of every job that ever ran."""
        newest = select(func.max(_job_runs.c.id)).group_by(_job_runs.c.job).scalar_subquery()
        query = select(_job_runs).where(_job_runs.c.id.in_(newest))
        with self.uow.transaction(unfenced=True) as connection:
            return {row.job: dict(row._mapping) for row in connection.execute(query)}
