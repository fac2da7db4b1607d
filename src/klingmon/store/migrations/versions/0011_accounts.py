"""Several accounts: the account each task is sent on, the set a batch may use.

``tasks.account`` names the account a task is (or will be) created on: ``default``
for every row stored before (one account), NULL only while a queued task of a batch
of several accounts waits to be placed; the submitter's claim fixes it, with its
pool, before the create is sent, and it never changes after. ``batches.accounts``
is the set (a JSON list) a batch may be sent on; NULL: the default account.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tasks",
        sa.Column("account", sa.String(40), server_default="default"),
    )
    op.add_column("batches", sa.Column("accounts", sa.JSON()))


def downgrade() -> None:
    # Plain ALTER TABLE DROP COLUMN (SQLite 3.35+, PostgreSQL), as in 0007.
    op.execute("ALTER TABLE batches DROP COLUMN accounts")
    op.execute("ALTER TABLE tasks DROP COLUMN account")
