"""Callbacks flowing per endpoint, in a typed table instead of a ``meta`` string.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "callback_flow",
        sa.Column("endpoint", sa.String(length=200), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("endpoint", name=op.f("pk_callback_flow")),
    )
    op.execute("DELETE FROM meta WHERE key LIKE 'callbacks.last:%'")


def downgrade() -> None:
    op.drop_table("callback_flow")
