"""job_runs (each run of a project-file job) and rate_budgets (shared platform budgets)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 13:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job", sa.String(), nullable=False),
        sa.Column("holder", sa.String(), nullable=True),
        sa.Column("trigger", sa.String(), nullable=False, server_default="manual"),
        sa.Column("status", sa.String(), nullable=False, server_default="running"),
        sa.Column("started_at", sa.String(), nullable=False),
        sa.Column("finished_at", sa.String(), nullable=True),
        sa.Column("runs", sa.String(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
    )
    op.create_index("ix_job_runs_job", "job_runs", ["job"])
    op.create_table(
        "rate_budgets",
        sa.Column("key", sa.String(), primary_key=True),
        sa.Column("capacity", sa.Float(), nullable=False),
        sa.Column("refill_rate", sa.Float(), nullable=False),
        sa.Column("tat", sa.Float(), nullable=False, server_default="0"),
        sa.Column("tat_floor", sa.Float(), nullable=False, server_default="0"),
        sa.Column("paused_until", sa.Float(), nullable=False, server_default="0"),
        sa.Column("spent_total", sa.Float(), nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_table("rate_budgets")
    op.drop_index("ix_job_runs_job", table_name="job_runs")
    op.drop_table("job_runs")
