"""Downloads of result files, and webhook-id de-duplication for callbacks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of the schema's types: a migration never imports the live schema.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Ms = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "downloads",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("task_id", _Id, nullable=False),
        sa.Column("batch_id", _Id, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("dest", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("expires_ms", _Ms(), nullable=True),
        sa.Column("next_try_ms", _Ms(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until_ms", _Ms(), nullable=True),
        sa.Column("created_ms", _Ms(), nullable=False),
        sa.Column("done_ms", _Ms(), nullable=True),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_downloads_task_id_tasks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_downloads")),
        sa.UniqueConstraint("task_id", "kind", "idx", name="uq_downloads_file"),
    )
    op.create_index(
        "ix_downloads_status_expiry",
        "downloads",
        ["status", "expires_ms"],
        unique=False,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column("webhook_id", sa.String(length=200), nullable=False),
        sa.Column("received_ms", _Ms(), nullable=False),
        sa.Column("task_id", _Id, nullable=True),
        sa.PrimaryKeyConstraint("webhook_id", name=op.f("pk_webhook_deliveries")),
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_downloads_status_expiry", table_name="downloads")
    op.drop_table("downloads")
