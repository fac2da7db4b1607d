"""The connection plumbing every part of :class:`Store` shares.

Each public method is normally its own short transaction. Inside
:meth:`StoreBase.transaction` every call the same thread makes joins one transaction
instead, so that a caller (the group commit of :mod:`klingmon.store._group`) can fold
many small writes into one commit without a second copy of any of them.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from klingmon.errors import StoreError
from klingmon.store import _database

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
        #: ``conn``: the transaction this thread's calls join (see :meth:`transaction`).
        self._joined = threading.local()

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._engine.dialect.name

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One write transaction that every call of this store from this thread joins.

        Committed when the block ends, rolled back when it raises; a nested call
        joins the outer one. Reads inside see the block's own writes.
        """
        if self._joined_conn() is not None:
            with self._write() as conn:
                yield conn
            return
        self._joined.after = []
        try:
            with self._write() as conn:
                self._joined.conn = conn
                try:
                    yield conn
                finally:
                    self._joined.conn = None
            committed = self._joined.after
        finally:
            self._joined.after = None
        self._committed(committed)

    def _committed(self, sent: list[Any]) -> None:
        """What the block asked to run once committed (see ``Flow.notify``)."""

    def _joined_conn(self) -> sa.Connection | None:
        conn: sa.Connection | None = getattr(self._joined, "conn", None)
        return conn

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        joined = self._joined_conn()
        try:
            if joined is not None:  # the enclosing transaction commits
                yield joined
                return
            writing = {_database.WRITE: True}
            with (
                self._engine.connect().execution_options(**writing) as c,
                c.begin(),
            ):
                yield c
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store write failed: {reason(exc)}") from exc

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        joined = self._joined_conn()
        if joined is not None:
            yield joined
            return
        try:
            with self._engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            # A damaged file or a lost server shows up on reads too: the same
            # one-line error as a failed write, never the driver's traceback.
            raise StoreError(f"store read failed: {reason(exc)}") from exc

    def _insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table) if self._pg else sqlite.insert(table)
