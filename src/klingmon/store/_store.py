"""The durable store: every fact about every task, committed before it is acted on.

Sync SQLAlchemy Core over SQLite (WAL) or PostgreSQL. :class:`Store` opens the
database and holds one repository per aggregate, all over one
:class:`~klingmon.store._base.UnitOfWork`: each public method is one short
transaction, or joins the one :meth:`Store.transaction` holds. What the two
databases do differently lives in :mod:`klingmon.store._dialect`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Self

import sqlalchemy as sa

from klingmon.errors import StoreError
from klingmon.store import _database
from klingmon.store._base import UnitOfWork, reason
from klingmon.store._checkpoint import Checkpointer
from klingmon.store._downloads import DownloadQueue
from klingmon.store._fleet import Fleet
from klingmon.store._flow import CallbackFlow
from klingmon.store._meta import Meta
from klingmon.store._outbox import Outbox
from klingmon.store._reports import Reports
from klingmon.store._spend import Spending
from klingmon.store._tasks import TaskQueue
from klingmon.store._watch import WatchList
from klingmon.store._writes import OUTBOX_KINDS

if TYPE_CHECKING:
    import contextlib
    from types import TracebackType

    from klingmon.store._dialect import WriterGate

__all__ = ["OUTBOX_KINDS", "Store", "checkpoints", "writer_gate"]

log = logging.getLogger(__name__)


class Store:
    """Open with :meth:`open`; use as a context manager or call :meth:`close`.

    The repositories: :attr:`tasks` (batches and the task queue), :attr:`watch`
    (tasks at Kling), :attr:`outbox` (events and their delivery), :attr:`downloads`
    (owed files), :attr:`fleet` (workers, locks, leases), :attr:`reports` (figures,
    counters), :attr:`meta` (key/value facts, statistics, revisions),
    :attr:`flow` (wake-ups in this process, callbacks flowing, changes since a mark)
    and :attr:`spend` (batch holds and caps, the spend ledger, learned prices).
    """

    def __init__(self, engine: sa.Engine) -> None:
        unit = UnitOfWork(engine)
        self._unit = unit
        self.fleet = Fleet(unit)
        self.tasks = TaskQueue(unit, notify=self.fleet.notify)
        self.watch = WatchList(unit)
        self.outbox = Outbox(unit)
        self.downloads = DownloadQueue(unit)
        self.reports = Reports(unit)
        self.meta = Meta(unit)
        self.flow = CallbackFlow(unit)
        self.spend = Spending(unit)

    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """Open (creating and migrating as needed) the database at ``url``."""
        parsed = _database.resolve_url(url)
        try:
            engine = _database.create_store_engine(parsed)
        except (sa.exc.ArgumentError, ImportError) as exc:
            raise StoreError(f"cannot use {_database.masked(parsed)}: {exc}") from exc
        try:
            _database.check_file(engine)
            _database.migrate(engine)
        except StoreError:
            engine.dispose()
            raise
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(
                f"cannot open the store at {_database.masked(parsed)}: {reason(exc)}"
            ) from exc
        log.debug("store.open", extra={"url": _database.masked(parsed)})
        return cls(engine)

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return _database.masked(self._engine.url)

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._unit.dialect.name

    def transaction(self) -> contextlib.AbstractContextManager[sa.Connection]:
        """One write transaction that every call of any repository from this thread
        joins (see :meth:`UnitOfWork.transaction`)."""
        return self._unit.transaction()

    def close(self) -> None:
        self._engine.dispose()

    @property
    def _engine(self) -> sa.Engine:
        return self._unit.engine

    def _write(self) -> contextlib.AbstractContextManager[sa.Connection]:
        return self._unit.write()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store(url={self.url!r})"


def writer_gate(store: Store) -> WriterGate:
    """The gate ``store``'s writers of this process share: ``klingmon serve`` marks
    the engine's calls ``background()`` and each callback's answer ``answering()``,
    so that the engine's writes and work make room for the answers."""
    return store._unit.gate  # noqa: SLF001 - the store package's own unit of work


def checkpoints(store: Store, *, interval: float = 0.5) -> Checkpointer:
    """SQLite's checkpoints of ``store`` in a thread of their own, off every commit
    (``klingmon serve``: none in a callback's answer); start it, or use ``with``."""
    return Checkpointer(store._unit.engine, interval=interval)  # noqa: SLF001 - as above
