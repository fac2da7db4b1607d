"""Indexes that let ``report`` read a million tasks in well under a second.

The batch/status index widens to cover every column the report counts by. On SQLite,
two expression indexes hold the queue and run durations in order, so that a percentile
is ``LIMIT 2 OFFSET k`` over an index rather than a sort in Python; PostgreSQL computes
them with ``percentile_cont`` and gets neither. A later migration that copies ``tasks``
in batch mode must create the SQLite pair again: reflection does not see them.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen copies of ``_schema.QUEUE_MS`` and ``_schema.RUN_MS`` as SQLite renders them.
_QUEUE_MS = "submitted_ms - created_ms"
_RUN_MS = (
    "CASE WHEN (submitted_ms IS NOT NULL AND status IN ('succeed', 'failed')"
    " AND finished_ms IS NOT NULL)"
    " THEN finished_ms - coalesce(processing_ms, submitted_ms) END"
)
_REPORT_COLUMNS = [
    "batch_id",
    "status",
    "learned_via",
    "stuck",
    "watch_timeout",
    "units",
]


def _sqlite() -> bool:
    return bool(op.get_context().dialect.name == "sqlite")


def upgrade() -> None:
    op.drop_index("ix_tasks_batch_status", table_name="tasks")
    op.create_index("ix_tasks_batch_report", "tasks", _REPORT_COLUMNS)
    if _sqlite():
        for name, expression in (
            ("ix_tasks_queue_ms", _QUEUE_MS),
            ("ix_tasks_run_ms", _RUN_MS),
        ):
            op.create_index(name, "tasks", [sa.text(expression), "batch_id"])


def downgrade() -> None:
    if _sqlite():
        op.drop_index("ix_tasks_run_ms", table_name="tasks")
        op.drop_index("ix_tasks_queue_ms", table_name="tasks")
    op.drop_index("ix_tasks_batch_report", table_name="tasks")
    op.create_index("ix_tasks_batch_status", "tasks", ["batch_id", "status"])
