"""Concurrency pools: each task's pool and the slots it holds there.

``tasks.pool`` is the label of its pool (account x model version x pack type,
``kling-3.0/video``; see ``klingmon.policy.pool_of``) and ``tasks.slots`` what it
holds there from submit until it ends (``n`` for an image task, else 1). The
submitter's claim counts in-flight slots per pool. Rows that have ended keep the
``legacy`` pool (they hold nothing); rows still queued or in flight get their real
pool and slots here, so that an upgrade in the middle of a run counts them where
Kling does. The index on ``tasks (status, pool, slots)`` finds the pools with
queued work and the least a queued task of each takes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from klingmon.policy import pool_of, slots_of

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

#: Statuses that hold a slot or wait for one (``klingmon.domain``'s, by value).
_OPEN = ("queued", "submitting", "submitted", "processing")


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("pool", sa.String(200), nullable=False, server_default="legacy"),
    )
    op.add_column(
        "tasks", sa.Column("slots", sa.Integer(), nullable=False, server_default="1")
    )
    op.create_index("ix_tasks_status_pool", "tasks", ["status", "pool", "slots"])
    tasks = sa.table(
        "tasks",
        sa.column("id", sa.Integer()),
        sa.column("endpoint", sa.String()),
        sa.column("body", sa.JSON()),
        sa.column("status", sa.String()),
        sa.column("pool", sa.String()),
        sa.column("slots", sa.Integer()),
    )
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(tasks.c.id, tasks.c.endpoint, tasks.c.body).where(
            tasks.c.status.in_(_OPEN)
        )
    ).all()
    update = (
        tasks.update()
        .where(tasks.c.id == sa.bindparam("row_id"))
        .values(pool=sa.bindparam("new_pool"), slots=sa.bindparam("new_slots"))
    )
    values = [
        {
            "row_id": r.id,
            "new_pool": pool_of(r.endpoint, r.body or {}).label,
            "new_slots": slots_of(r.endpoint, r.body or {}),
        }
        for r in rows
    ]
    for start in range(0, len(values), 1000):
        conn.execute(update, values[start : start + 1000])


def downgrade() -> None:
    op.drop_index("ix_tasks_status_pool", table_name="tasks")
    # Plain ALTER TABLE DROP COLUMN (SQLite 3.35+, PostgreSQL), as in 0007.
    op.execute("ALTER TABLE tasks DROP COLUMN slots")
    op.execute("ALTER TABLE tasks DROP COLUMN pool")
