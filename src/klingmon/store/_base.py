"""The connection plumbing every part of :class:`Store` shares."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from klingmon.errors import StoreError
from klingmon.store import _engine

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["StoreBase", "reason"]


def reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's first line, never the statement or its parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else type(exc).__name__
    return (text.strip().splitlines() or [type(exc).__name__])[0]


class StoreBase:
    """An engine, short read and write transactions, and a portable upsert."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._pg = engine.dialect.name == "postgresql"

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        try:
            with (
                self._engine.connect().execution_options(**{_engine.WRITE: True}) as c,
                c.begin(),
            ):
                yield c
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store write failed: {reason(exc)}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn:
            yield conn

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table) if self._pg else sqlite.insert(table)
