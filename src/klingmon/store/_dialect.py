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
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from klingmon.store import _report

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

__all__ = ["CHANNEL", "Dialect", "WriterGate", "dialect_named", "dialect_of"]

log = logging.getLogger(__name__)

#: The NOTIFY channel: new work was stored or a callback arrived.
CHANNEL = "klingmon"

H = TypeVar("H")


class WriterGate:
    """One writer of this process at a time; background writers let others first.

    SQLite has one write slot. Under ``klingmon serve`` the engine's stream of short
    transactions (a submit's two, a poll round's applies, flags) would otherwise take
    turns with the receiver's commits in no order, so that a callback could wait
    behind several of them, and the engine's threads would hold the interpreter lock
    the receiver needs between its statements. An answer is waited for, the engine's
    work is not. So a background writer (inside :meth:`background`) enters
    only when no other writer waits, and, for up to :attr:`yield_s`, only when no
    answer is being given by another thread (:meth:`answering`); any other writer
    waits for at most the one transaction that holds the gate. An answer given on the
    caller's own thread (an engine on the receiver's loop) holds nothing back: it
    could not go on while its thread waits.
    """

    def __init__(self, *, yield_s: float = 0.01) -> None:
        #: How long a background caller waits, at most, for answers to be given:
        #: a callback's answer takes a few milliseconds; a flood of them only slows
        #: the engine down, never stops it.
        self.yield_s = yield_s
        self._cond = threading.Condition(threading.Lock())
        #: ``on``: this thread's calls are background ones (see :meth:`background`).
        self._local = threading.local()
        self._held = False
        #: The thread that holds the gate (while ``_held``).
        self._holder: int | None = None
        #: Writers (not background ones) waiting for the gate.
        self._waiting = 0
        #: Background writers waiting for it.
        self._behind = 0
        #: Answers being given, by thread (see :meth:`answering`).
        self._answering: Counter[int] = Counter()
        #: Called as each answer starts (see :meth:`on_answer`).
        self._on_answer: list[Callable[[], None]] = []
        #: Called as answers start being given and as the last ends
        #: (see :meth:`while_answering`).
        self._while: list[tuple[Callable[[], None], Callable[[], None]]] = []

    @property
    def backlog(self) -> int:
        """How many callers wait for the gate or for answers, background ones too."""
        return self._waiting + self._behind

    @contextlib.contextmanager
    def background(self) -> Iterator[None]:
        """Calls nobody waits for (the engine's, beside a receiver that is waited
        for): the block starts once no other thread gives an answer (a short wait at
        most), and its writes enter the gate behind every other waiting writer.
        They are the same calls otherwise."""
        self.yield_to_answers()
        before = getattr(self._local, "on", False)
        self._local.on = True
        try:
            yield
        finally:
            self._local.on = before

    @contextlib.contextmanager
    def answering(self) -> Iterator[None]:
        """Someone waits for what the block does (a callback's answer)."""
        me = threading.get_ident()
        with self._cond:
            if not self._answering:
                for enter, _ in self._while:
                    enter()
            self._answering[me] += 1
            told = list(self._on_answer)
        for fn in told:
            fn()
        try:
            yield
        finally:
            with self._cond:
                self._answering[me] -= 1
                if not self._answering[me]:
                    del self._answering[me]
                if not self._answering:
                    for _, leave in self._while:
                        leave()
                self._cond.notify_all()

    def on_answer(self, fn: Callable[[], None]) -> Callable[[], None]:
        """Call ``fn`` (on the answering thread) as each answer starts: an engine's
        loop asks to run :meth:`yield_to_answers` next. Returns a stopper."""
        return self._subscribe(self._on_answer, fn)

    def while_answering(
        self, enter: Callable[[], None], leave: Callable[[], None]
    ) -> Callable[[], None]:
        """Call ``enter`` as answers start being given (none was), ``leave`` as the
        last of them ends; both quick, under the gate's own lock, so that the two
        always alternate. Returns a stopper."""
        return self._subscribe(self._while, (enter, leave))

    def _subscribe(self, hooks: list[H], hook: H) -> Callable[[], None]:
        """Add ``hook`` to ``hooks`` (under the gate's lock); the stopper removes it."""
        with self._cond:
            hooks.append(hook)

        def stop() -> None:
            with self._cond:
                if hook in hooks:
                    hooks.remove(hook)

        return stop

    def pause(self) -> None:
        """In background calls, :meth:`yield_to_answers`; a no-op in any other.

        A pause point inside one long background call (between its reads, every
        twenty-five rows it builds): an answer that starts meanwhile waits for the
        call's current stretch only, not for the whole call. Never while the
        caller holds the gate: the answer would wait for it in turn.
        """
        if getattr(self._local, "on", False) and self._holder != threading.get_ident():
            self.yield_to_answers()

    def yield_to_answers(self) -> None:
        """Wait (up to :attr:`yield_s`) until no other thread is giving an answer."""
        with self._cond:
            self._behind += 1
            try:
                self._cond.wait_for(self._quiet, timeout=self.yield_s)
            finally:
                self._behind -= 1

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the gate for the block; a background writer enters last."""
        background = getattr(self._local, "on", False)
        with self._cond:
            if background:
                self._behind += 1
                try:
                    self._enter_behind()
                finally:
                    self._behind -= 1
            else:
                self._waiting += 1
                try:
                    self._cond.wait_for(lambda: not self._held)
                finally:
                    self._waiting -= 1
            self._held = True
            self._holder = threading.get_ident()
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._holder = None
                self._cond.notify_all()

    def _enter_behind(self) -> None:
        """Wait (holding ``_cond``) for a free gate nobody else waits for, and for
        the answers being given (up to :attr:`yield_s`)."""
        until = time.monotonic() + self.yield_s
        while True:
            quiet = self._quiet() or time.monotonic() >= until
            if not self._held and not self._waiting and quiet:
                return
            self._cond.wait(None if quiet else max(until - time.monotonic(), 0.0))

    def _quiet(self) -> bool:
        """No thread but the caller's is giving an answer (holding ``_cond``)."""
        answering = self._answering
        return not answering or set(answering) == {threading.get_ident()}


class _Open(WriterGate):
    """No gate at all: every writer goes in at once (answers still come first)."""

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        yield


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

    def writer_gate(self) -> WriterGate:
        """What a writer of this process holds around its write transaction.

        SQLite lets one writer in at a time and makes the others sleep and retry
        (its busy handler backs off up to 100 ms a try): under ``klingmon serve``
        the receiver's commits would sleep behind the engine's. A gate shared by the
        process's writers hands the file over as soon as it is free instead, to a
        waiting foreground writer first (see :class:`WriterGate`).
        """
        return WriterGate()

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

    def writer_gate(self) -> WriterGate:
        """None: PostgreSQL's writers run side by side, locking rows as they go."""
        return _Open()

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
