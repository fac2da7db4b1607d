"""Everything SQLite and PostgreSQL do differently, in one place.

The repositories never ask which database they run on: they ask their
:class:`Dialect` to insert-or-ignore, to serialise writers, to lock rows, to
wake listeners or to compute percentiles, and each dialect does it its own way.
SQLite lets one writer in at a time (``BEGIN IMMEDIATE``), so locks that
PostgreSQL needs are no-ops there; it has no LISTEN/NOTIFY (one machine, usually
one process) and no ``percentile_cont``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from klingmon.store import _report

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["CHANNEL", "Dialect", "dialect_named", "dialect_of"]

log = logging.getLogger(__name__)

#: The NOTIFY channel: new work was stored or a callback arrived.
CHANNEL = "klingmon"


class Dialect:
    """SQLite's way; :class:`_PostgreSQL` overrides where PostgreSQL differs."""

    name = "sqlite"

    def insert(self, table: sa.Table) -> Any:
        """An INSERT that knows ``on_conflict_do_nothing``/``_do_update``."""
        return sqlite.insert(table)

    def serialise(self, conn: sa.Connection, key: int) -> None:
        """Hold the transaction-wide lock ``key`` until ``conn`` commits.

        SQLite's write transactions are serial already (``BEGIN IMMEDIATE``).
        """
        del conn, key

    def writer_gate(self) -> contextlib.AbstractContextManager[Any]:
        """What a writer of this process holds around its write transaction.

        SQLite lets one writer in at a time and makes the others sleep and retry
        (its busy handler backs off up to 100 ms a try): under ``klingmon serve``
        the receiver's commits would sleep behind the engine's. A lock shared by the
        process's writers hands the file over as soon as it is free instead.
        """
        return threading.Lock()

    def lock(
        self,
        conn: sa.Connection,
        stmt: sa.Select[Any],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """Take the row locks ``stmt`` (a ``FOR UPDATE`` select) names, in its order.

        Nothing to do on SQLite: one writer at a time holds the whole file.
        """
        del conn, stmt, params

    def lock_joined(
        self,
        write: Callable[[], contextlib.AbstractContextManager[sa.Connection]],
        stmt: sa.Select[Any],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        """:meth:`lock` inside the transaction ``write`` opens or joins.

        SQLite does not open one at all: it would only take the write lock early.
        """
        del write, stmt, params

    def notify(
        self, write: Callable[[], contextlib.AbstractContextManager[sa.Connection]]
    ) -> None:
        """Wake every listening worker; nobody listens on SQLite."""
        del write

    def listen(
        self, engine: sa.Engine, callback: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``callback`` (from a thread) on each notification; returns a stopper."""
        del engine, callback
        return lambda: None

    def percentiles(
        self, conn: sa.Connection, batch_id: int | None, total: int
    ) -> tuple[float | None, ...]:
        """Queue and run p50/p95 in seconds: an index walk or a sort in Python."""
        walk = _report.walk_pays(conn, batch_id, total)
        return _report.durations(conn, batch_id, total, walk=walk)


class _PostgreSQL(Dialect):
    name = "postgresql"

    def insert(self, table: sa.Table) -> Any:
        return postgresql.insert(table)

    def serialise(self, conn: sa.Connection, key: int) -> None:
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    def writer_gate(self) -> contextlib.AbstractContextManager[Any]:
        """None: PostgreSQL's writers run side by side, locking rows as they go."""
        return contextlib.nullcontext()

    def lock(
        self,
        conn: sa.Connection,
        stmt: sa.Select[Any],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        conn.execute(stmt, dict(params or {})).all()

    def lock_joined(
        self,
        write: Callable[[], contextlib.AbstractContextManager[sa.Connection]],
        stmt: sa.Select[Any],
        params: Mapping[str, Any] | None = None,
    ) -> None:
        with write() as conn:
            self.lock(conn, stmt, params)

    def notify(
        self, write: Callable[[], contextlib.AbstractContextManager[sa.Connection]]
    ) -> None:
        with write() as conn:
            conn.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))

    def listen(
        self, engine: sa.Engine, callback: Callable[[], None]
    ) -> Callable[[], None]:
        import psycopg  # noqa: PLC0415 - only PostgreSQL stores listen

        url = engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        stop = threading.Event()

        def run() -> None:
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            callback()
            except psycopg.Error as exc:
                log.warning("store.listen_failed", extra={"error": type(exc).__name__})

        thread = threading.Thread(target=run, name="klingmon-listen", daemon=True)
        thread.start()

        def stopper() -> None:
            stop.set()
            thread.join(timeout=5)

        return stopper

    def percentiles(
        self, conn: sa.Connection, batch_id: int | None, total: int
    ) -> tuple[float | None, ...]:
        del total
        return _report.percentiles_in_sql(conn, batch_id)


_DIALECTS: dict[str, Dialect] = {d.name: d for d in (Dialect(), _PostgreSQL())}


def dialect_named(name: str) -> Dialect:
    """The dialect of a SQLAlchemy dialect name (``sqlite``, ``postgresql``)."""
    try:
        return _DIALECTS[name]
    except KeyError:
        raise ValueError(f"klingmon has no store for {name!r} databases") from None


def dialect_of(conn: sa.Connection | sa.Engine) -> Dialect:
    """The dialect a connection or engine speaks."""
    return dialect_named(conn.dialect.name)
