"""The unit of work every repository of :class:`~klingmon.store.Store` shares.

Each public method of a repository is normally its own short transaction. Inside
:meth:`UnitOfWork.transaction` every call the same thread makes, through any
repository, joins one transaction instead, so that a caller (the group commit of
:mod:`klingmon.store._group`) can fold many small writes into one commit without a
second copy of any of them.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa

from klingmon.errors import StoreError
from klingmon.store import _database
from klingmon.store._dialect import dialect_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["PACE_ROWS", "UnitOfWork", "reason"]

T = TypeVar("T")

#: Rows a background call builds between two pauses for answers
#: (:meth:`UnitOfWork.paced`).
PACE_ROWS = 25


def reason(exc: sa.exc.SQLAlchemyError) -> str:
    """The driver's first line, never the statement or its parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else type(exc).__name__
    return (text.strip().splitlines() or [type(exc).__name__])[0]


class UnitOfWork:
    """An engine, its dialect, and short read and write transactions on it."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        #: What this database does its own way (upserts, locks, wake-ups).
        self.dialect = dialect_of(engine)
        #: Held around each write transaction of this process (see the dialect).
        self.gate = self.dialect.writer_gate()
        #: ``conn``: the transaction this thread's calls join (see :meth:`transaction`);
        #: ``after``: the notices to tell once it committed.
        self._joined = threading.local()
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Any], None]] = []

    # -- in-process listeners: the wake-up channel's shortcut ----------------------

    def listen_here(self, fn: Callable[[Any], None]) -> Callable[[], None]:
        """Call ``fn`` with each notice :meth:`tell` hears; returns a stopper."""
        with self._lock:
            self._listeners.append(fn)

        def stop() -> None:
            with self._lock:
                if fn in self._listeners:
                    self._listeners.remove(fn)

        return stop

    def tell(self, notice: Any) -> None:
        """Call this process's listeners with ``notice`` now, or once the
        transaction this thread joined committed (never for a rolled-back one)."""
        after: list[Any] | None = getattr(self._joined, "after", None)
        if after is not None:
            after.append(notice)
            return
        with self._lock:
            listeners = list(self._listeners)
        for fn in listeners:
            fn(notice)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sa.Connection]:
        """One write transaction that every store call from this thread joins.

        Committed when the block ends, rolled back when it raises; a nested call
        joins the outer one. Reads inside see the block's own writes.
        """
        if self._joined_conn() is not None:
            with self.write() as conn:
                yield conn
            return
        self._joined.after = []
        try:
            with self.write() as conn:
                self._joined.conn = conn
                try:
                    yield conn
                finally:
                    self._joined.conn = None
            committed: list[Any] = self._joined.after
        finally:
            self._joined.after = None
        for notice in committed:
            self.tell(notice)

    def _joined_conn(self) -> sa.Connection | None:
        conn: sa.Connection | None = getattr(self._joined, "conn", None)
        return conn

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite), or the joined one."""
        joined = self._joined_conn()
        try:
            if joined is not None:  # the enclosing transaction commits
                yield joined
                return
            writing = {_database.WRITE: True}
            with (
                self.gate.hold(),
                self.engine.connect().execution_options(**writing) as c,
                c.begin(),
            ):
                yield c
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"store write failed: {reason(exc)}") from exc

    def paced(self, rows: Iterable[T], every: int = PACE_ROWS) -> Iterator[T]:
        """``rows`` one by one, with a pause for answers every ``every``
        (:meth:`~klingmon.store.WriterGate.pause`): a background call that builds
        a thousand rows lets a callback's answer go first, in the middle of it."""
        for i, row in enumerate(rows):
            if i and not i % every:
                self.gate.pause()
            yield row

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A connection to read on, or the joined transaction."""
        joined = self._joined_conn()
        if joined is not None:
            yield joined
            return
        self.gate.pause()
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.SQLAlchemyError as exc:
            # A damaged file or a lost server shows up on reads too: the same
            # one-line error as a failed write, never the driver's traceback.
            raise StoreError(f"store read failed: {reason(exc)}") from exc
