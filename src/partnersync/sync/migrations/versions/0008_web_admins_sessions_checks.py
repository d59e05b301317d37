"""web_admins, web_sessions (the connect page's sign-in) and accounts' last check

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_admins",
        sa.Column("username", sa.String(), primary_key=True),
        sa.Column("password_hash", sa.String(), nullable=False),
        sa.Column("created_at", sa.String(), nullable=False),
    )
    op.create_table(
        "web_sessions",
        sa.Column("token_hash", sa.String(), primary_key=True),
        sa.Column("username", sa.String(), nullable=True),
        sa.Column("csrf_token", sa.String(), nullable=False),
        sa.Column("created_at", sa.String(), nullable=False),
        sa.Column("expires_at", sa.String(), nullable=False),
    )
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("checked_at", sa.String(), nullable=True))
        batch.add_column(sa.Column("check_error", sa.Text(), nullable=True))
        batch.add_column(sa.Column("last_ok_at", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("last_ok_at")
        batch.drop_column("check_error")
        batch.drop_column("checked_at")
    op.drop_table("web_sessions")
    op.drop_table("web_admins")
