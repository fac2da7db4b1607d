"""Indexes that keep the engine's every-round queries off the queued backlog.

With 20,000 tasks queued, the submitter's slot count and its pick of the oldest
queued tasks each walked every queued row (the pick also sorted them), and so did the
idle loop's "when is the next work due": a few milliseconds per round, many rounds a
second. ``(status, id)`` hands out queued tasks in id order and stops at the limit; a
partial index over leased rows finds the queued tasks another worker is sending.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_LEASED = sa.text("lease_owner IS NOT NULL")


def upgrade() -> None:
    op.create_index("ix_tasks_status_id", "tasks", ["status", "id"])
    op.create_index(
        "ix_tasks_leased",
        "tasks",
        ["status", "lease_until_ms"],
        sqlite_where=_LEASED,
        postgresql_where=_LEASED,
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_leased", table_name="tasks")
    op.drop_index("ix_tasks_status_id", table_name="tasks")
