"""pending_connects: an account connection started and waiting for the platform's callback

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 14:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pending_connects",
        sa.Column("state", sa.String(), primary_key=True),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("base_url", sa.String(), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(), nullable=False),
        sa.Column("completed_at", sa.String(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("pending_connects")
