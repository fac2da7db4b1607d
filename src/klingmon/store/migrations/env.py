"""Alembic environment: runs on the connection the store hands over.

``Store.open`` passes its own connection in ``config.attributes["connection"]`` so
that the pragmas and the search path it set apply to the migration too. Without one
(the ``alembic`` command line), the URL comes from ``sqlalchemy.url``.
"""

# ruff: noqa: INP001 - alembic loads this file by path; it is not a package

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine

from klingmon.store._schema import metadata

config = context.config


def _run(connection: Any) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,  # SQLite alters tables by copying them
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
else:
    run_online()
