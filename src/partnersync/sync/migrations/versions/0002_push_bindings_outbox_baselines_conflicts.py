"""push: bindings outbox baselines conflicts

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:08:15.208383
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "baselines",
        sa.Column("target_account", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("canonical_key", sa.String(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("target_account", "entity", "canonical_key"),
    )
    op.create_table(
        "bindings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("target_account", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("canonical_key", sa.String(), nullable=False),
        sa.Column("external_id", sa.String(), nullable=False),
        sa.Column("created_at", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("target_account", "entity", "canonical_key", name="uq_bindings_key"),
        sa.UniqueConstraint("target_account", "entity", "external_id", name="uq_bindings_external"),
    )
    op.create_table(
        "conflicts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("target_account", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("canonical_key", sa.String(), nullable=False),
        sa.Column("field", sa.String(), nullable=False),
        sa.Column("hub_value", sa.Text(), nullable=True),
        sa.Column("platform_value", sa.Text(), nullable=True),
        sa.Column("baseline_value", sa.Text(), nullable=True),
        sa.Column("policy", sa.String(), nullable=False),
        sa.Column("winner", sa.String(), nullable=False),
        sa.Column("created_at", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("target_account", sa.String(), nullable=False),
        sa.Column("entity", sa.String(), nullable=False),
        sa.Column("canonical_key", sa.String(), nullable=False),
        sa.Column("operation", sa.String(), nullable=False),
        sa.Column("idempotency_key", sa.String(), nullable=False),
        sa.Column("content_hash", sa.String(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("batch_key", sa.String(), nullable=True),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("source_ref", sa.String(), nullable=True),
        sa.Column("created_at", sa.String(), nullable=False),
        sa.Column("updated_at", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key", name="uq_outbox_key"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(
            "ix_outbox_target_status", ["target_account", "entity", "status"], unique=False
        )

    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_ref", sa.String(), nullable=True))
        batch_op.add_column(
            sa.Column("direction", sa.String(), nullable=False, server_default="pull")
        )
        batch_op.add_column(sa.Column("outbox_id", sa.Integer(), nullable=True))

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.add_column(sa.Column("source_ref", sa.String(), nullable=True))

    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("conflicts", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("skipped", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("skipped")
        batch_op.drop_column("conflicts")

    with op.batch_alter_table("records", schema=None) as batch_op:
        batch_op.drop_column("source_ref")

    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_column("outbox_id")
        batch_op.drop_column("direction")
        batch_op.drop_column("source_ref")

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_target_status")

    op.drop_table("outbox")
    op.drop_table("conflicts")
    op.drop_table("bindings")
    op.drop_table("baselines")
