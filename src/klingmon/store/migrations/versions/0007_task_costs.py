"""Each task's cost record: cash, currency, pack and cash type, list price.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("cash", sa.Float()),
    ("currency", sa.String(length=8)),
    ("package_type", sa.String(length=16)),
    ("list_price", sa.Float()),
    ("cash_type", sa.String(length=16)),
)


def upgrade() -> None:
    for name, type_ in _COLUMNS:
        op.add_column("tasks", sa.Column(name, type_, nullable=True))


def downgrade() -> None:
    # Plain ALTER TABLE DROP COLUMN (SQLite 3.35+, PostgreSQL): batch mode would copy
    # ``tasks`` and lose its expression indexes (see ``DURATION_INDEXES``).
    for name, _ in reversed(_COLUMNS):
        op.execute(f"ALTER TABLE tasks DROP COLUMN {name}")
