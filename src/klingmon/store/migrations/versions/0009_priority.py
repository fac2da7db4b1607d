"""Batch priorities: a priority per batch, when it last got a slot, and an index.

``batches.priority`` (higher first, 0 for every batch stored before) and
``batches.served_ms`` (when a task of the batch was last claimed for sending; the
start of its priority's wait, see ``klingmon.policy._priority``). The index on
``tasks (status, batch_id, id)`` finds one waiting batch's first queued tasks
without walking the rest of the backlog.

Revision ID: 0009
Create Date: 2026-12-02
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "batches",
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column("batches", sa.Column("served_ms", sa.BigInteger(), nullable=True))
    op.create_index("ix_tasks_status_batch_id", "tasks", ["status", "batch_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_batch_id", table_name="tasks")
    # Plain ALTER TABLE DROP COLUMN (SQLite 3.35+, PostgreSQL), as in 0007.
    op.execute("ALTER TABLE batches DROP COLUMN served_ms")
    op.execute("ALTER TABLE batches DROP COLUMN priority")
