"""Initial schema: batches, tasks, events, outbox, statistics, counters, meta.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Frozen copy of the schema's types: a migration never imports the live schema.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Ms = sa.BigInteger


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_ms", _Ms(), nullable=False),
        sa.Column("defaults", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_batches")),
        sa.UniqueConstraint("name", name=op.f("uq_batches_name")),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("batch_id", _Id, server_default="0", nullable=False),
        sa.Column("value", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("name", "batch_id", name=op.f("pk_counters")),
    )
    op.create_table(
        "duration_stats",
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("blob", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_duration_stats")),
    )
    op.create_table(
        "meta",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_meta")),
    )
    op.create_table(
        "tasks",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("batch_id", _Id, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("prompt", sa.Text(), nullable=True),
        sa.Column("model_name", sa.String(length=100), nullable=True),
        sa.Column("mode", sa.String(length=50), nullable=True),
        sa.Column("duration", sa.String(length=20), nullable=True),
        sa.Column("external_task_id", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_msg", sa.Text(), nullable=True),
        sa.Column("kling_created_ms", _Ms(), nullable=True),
        sa.Column("kling_updated_ms", _Ms(), nullable=True),
        sa.Column("created_ms", _Ms(), nullable=False),
        sa.Column("submitted_ms", _Ms(), nullable=True),
        sa.Column("processing_ms", _Ms(), nullable=True),
        sa.Column("finished_ms", _Ms(), nullable=True),
        sa.Column("phase_ms", _Ms(), nullable=False),
        sa.Column("next_poll_ms", _Ms(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until_ms", _Ms(), nullable=True),
        sa.Column("submit_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("polls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("units", sa.Float(), nullable=True),
        sa.Column(
            "watch_timeout", sa.Boolean(), server_default=sa.false(), nullable=False
        ),
        sa.Column("stuck", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("deadline_ms", _Ms(), nullable=True),
        sa.Column("retry_of", _Id, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("learned_via", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["batches.id"], name=op.f("fk_tasks_batch_id_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("external_task_id", name=op.f("uq_tasks_external_task_id")),
    )
    op.create_index("ix_tasks_batch_status", "tasks", ["batch_id", "status"])
    op.create_index(op.f("ix_tasks_next_poll_ms"), "tasks", ["next_poll_ms"])
    op.create_index("ix_tasks_status_next_poll", "tasks", ["status", "next_poll_ms"])
    op.create_index(op.f("ix_tasks_task_id"), "tasks", ["task_id"])
    op.create_table(
        "events",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("task_id", _Id, nullable=False),
        sa.Column("batch_id", _Id, nullable=False),
        sa.Column("at_ms", _Ms(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("old_status", sa.String(length=16), nullable=True),
        sa.Column("new_status", sa.String(length=16), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_events_task_id_tasks")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_batch", "events", ["batch_id", "id"])
    op.create_index("ix_events_task", "events", ["task_id", "id"])
    op.create_table(
        "outbox",
        sa.Column("id", _Id, autoincrement=True, nullable=False),
        sa.Column("event_id", _Id, nullable=False),
        sa.Column("due_ms", _Ms(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("delivered_ms", _Ms(), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_until_ms", _Ms(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["event_id"], ["events.id"], name=op.f("fk_outbox_event_id_events")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index("ix_outbox_pending", "outbox", ["delivered_ms", "due_ms"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("events")
    op.drop_table("tasks")
    op.drop_table("meta")
    op.drop_table("duration_stats")
    op.drop_table("counters")
    op.drop_table("batches")
