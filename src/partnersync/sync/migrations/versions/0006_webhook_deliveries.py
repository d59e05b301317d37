"""webhook_deliveries: each accepted delivery once (by platform, account and delivery id)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 14:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("account", sa.String(), primary_key=True),
        sa.Column("delivery_id", sa.String(), primary_key=True),
        sa.Column("topic", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=True),
        sa.Column("triggered_at", sa.String(), nullable=True),
        sa.Column("received_at", sa.String(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
