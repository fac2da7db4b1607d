"""Spend control: each task's quote and spend ledger, each batch's state and cap,
learned prices, and each request's hash (a repeat of a success is not paid again).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TASK_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("quoted_units", sa.Float()),
    ("spend", sa.String(length=16)),
    ("spend_units", sa.Float()),
    ("reserved_ms", sa.BigInteger()),
    ("request_hash", sa.String(length=64)),
    ("repeat_of", sa.BigInteger().with_variant(sa.Integer(), "sqlite")),
)
_BATCH_COLUMNS: tuple[tuple[str, sa.types.TypeEngine[Any]], ...] = (
    ("state", sa.String(length=24)),
    ("max_units", sa.Float()),
    ("quote", sa.JSON()),
)


def upgrade() -> None:
    for name, type_ in _TASK_COLUMNS:
        op.add_column("tasks", sa.Column(name, type_, nullable=True))
    for name, type_ in _BATCH_COLUMNS:
        op.add_column("batches", sa.Column(name, type_, nullable=True))
    op.create_index("ix_tasks_reserved_ms", "tasks", ["reserved_ms"])
    op.create_index("ix_tasks_batch_spend", "tasks", ["batch_id", "spend"])
    op.create_index("ix_tasks_request_hash", "tasks", ["request_hash"])
    op.create_table(
        "price_stats",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("count", sa.Float(), nullable=False, server_default="0"),
        sa.Column("units", sa.Float(), nullable=False, server_default="0"),
        sa.Column("cash_count", sa.Float(), nullable=False, server_default="0"),
        sa.Column("cash", sa.Float(), nullable=False, server_default="0"),
        sa.Column("currency", sa.String(length=8), nullable=True),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_price_stats")),
    )


def downgrade() -> None:
    # Plain DROP COLUMN, as 0007: batch mode would copy ``tasks`` and lose its
    # expression indexes.
    op.drop_table("price_stats")
    op.drop_index("ix_tasks_request_hash", table_name="tasks")
    op.drop_index("ix_tasks_batch_spend", table_name="tasks")
    op.drop_index("ix_tasks_reserved_ms", table_name="tasks")
    for name, _ in reversed(_BATCH_COLUMNS):
        op.execute(f"ALTER TABLE batches DROP COLUMN {name}")
    for name, _ in reversed(_TASK_COLUMNS):
        op.execute(f"ALTER TABLE tasks DROP COLUMN {name}")
