"""SQLite's WAL checkpoints in a thread of their own, off every commit.

By default SQLite checkpoints inside the commit that grows the write-ahead log past
1,000 pages: that commit copies the log's pages into the database file and syncs it
before it returns. Under ``klingmon serve`` it is as often as not a callback's
commit, and the callback's answer waits for it: in ``bench.serve_load`` checkpoints
were most of the answers' tail (p99 8 ms idle; 5.7 ms with checkpoints here).

A started :class:`Checkpointer` raises the threshold of the store's connections to
:data:`CEILING` pages (a safety net should its thread fall behind) and runs a
``PASSIVE`` checkpoint every ``interval`` seconds on a connection of its own: it never
waits for a reader or a writer, and SQLite lets other threads run while it copies.
On PostgreSQL, or an in-memory SQLite store, it does nothing.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from typing import TYPE_CHECKING, Any, Self

from sqlalchemy import event

from klingmon.store._database import sqlite_file

if TYPE_CHECKING:
    from types import TracebackType

    import sqlalchemy as sa

__all__ = ["CEILING", "Checkpointer"]

log = logging.getLogger(__name__)

#: The pages the log may hold before a commit checkpoints after all (about 40 MB).
CEILING = 10_000


class Checkpointer:
    """Checkpoints ``engine``'s SQLite file every ``interval`` s, in a thread."""

    def __init__(self, engine: sa.Engine, *, interval: float = 0.5) -> None:
        self.interval = interval
        self._engine = engine
        #: The file, when there is one to checkpoint.
        self._path = sqlite_file(engine.url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        return self._path is not None

    def start(self) -> None:
        """Take checkpoints off the store's commits; a no-op without a file."""
        if self._path is None or self._thread is not None:
            return
        event.listen(self._engine, "connect", _raise_threshold)
        # Pooled connections kept the default: new ones get the ceiling.
        self._engine.dispose()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="klingmon-checkpoints", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread; commits checkpoint again, past the ceiling only, until
        their connections are closed (the last one checkpoints the file)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join()
        event.remove(self._engine, "connect", _raise_threshold)

    def checkpoint(self) -> tuple[int, int, int]:
        """One ``PASSIVE`` checkpoint now: (busy, pages in the log, pages copied)."""
        if self._path is None:
            return (0, 0, 0)
        with contextlib.closing(sqlite3.connect(self._path, timeout=0)) as conn:
            return _checkpoint(conn)

    def _run(self) -> None:
        """Checkpoint until stopped, on one connection of the thread's own."""
        assert self._path is not None  # noqa: S101 - started only with a file
        conn = sqlite3.connect(self._path, timeout=0)
        try:
            while not self._stop.wait(self.interval):
                try:
                    _checkpoint(conn)
                except sqlite3.Error as exc:  # the next one tries again
                    log.warning("store.checkpoint_failed", extra={"error": str(exc)})
        finally:
            conn.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        running = self._thread is not None
        return f"Checkpointer(interval={self.interval}, running={running})"


def _checkpoint(conn: sqlite3.Connection) -> tuple[int, int, int]:
    busy, logged, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(busy), int(logged), int(copied)


def _raise_threshold(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA wal_autocheckpoint = {CEILING}")
    finally:
        cursor.close()
