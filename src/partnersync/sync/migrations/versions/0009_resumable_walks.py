"""runs: resume_token, walk_started_at, walk_since (unsorted walks resume mid-run)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 16:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("resume_token", sa.Text(), nullable=True))
        batch.add_column(sa.Column("walk_started_at", sa.String(), nullable=True))
        batch.add_column(sa.Column("walk_since", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("walk_since")
        batch.drop_column("walk_started_at")
        batch.drop_column("resume_token")
