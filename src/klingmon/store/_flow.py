"""What an engine learns from the store's other writers, whatever process they run in.

Two things: whether callbacks flow for an endpoint (its polls may then fall back to a
safety net), and which status changes were recorded since a mark (so that a finish a
receiver applied frees a slot and teaches a duration exactly as a poll's does).
Listeners registered in this process hear :meth:`notify` at once, after the
transaction that called it committed; PostgreSQL's NOTIFY carries it to the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from klingmon.domain import TERMINAL, EventKind, TaskStatus
from klingmon.store._convert import task_row
from klingmon.store._database import sqlite_file
from klingmon.store._schema import WATCH_COLUMNS, callback_flow, events, tasks

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from klingmon.store._base import UnitOfWork
    from klingmon.store._rows import TaskRow

__all__ = ["CallbackFlow", "Notice", "RecordedChange"]

#: The changes an engine acts on: a finish frees a slot; both may teach a duration.
_WATCHED = sorted(s.value for s in (*TERMINAL, TaskStatus.PROCESSING))


@dataclass(frozen=True, slots=True)
class Notice:
    """What a writer tells listeners: the endpoints callbacks came for, and whether
    any reported a final status (a slot frees, files may be owed)."""

    endpoints: frozenset[str] = frozenset()
    finish: bool = True


@dataclass(frozen=True, slots=True)
class RecordedChange:
    """A status change as the events table holds it; ``task`` is the row now."""

    event_id: int
    old_status: TaskStatus | None
    new_status: TaskStatus
    source: str
    task: TaskRow


class CallbackFlow:
    """Notices to this process's listeners, callbacks flowing per endpoint, and the
    status changes recorded since a mark."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

    @property
    def in_memory(self) -> bool:
        """An in-memory SQLite store: one shared connection, for one thread at once."""
        url = self._unit.engine.url
        return url.get_backend_name() == "sqlite" and sqlite_file(url) is None

    # -- in-process listeners --------------------------------------------------------

    def listen_here(self, fn: Callable[[Notice], None]) -> Callable[[], None]:
        """Call ``fn`` with each :class:`Notice` this store object sends (from the
        sender's thread, once its transaction committed); returns a stopper."""
        return self._unit.listen_here(fn)

    # -- callbacks flowing -------------------------------------------------------------

    def note_callbacks(self, endpoints: Collection[str], now_ms: int) -> None:
        """Callbacks came for ``endpoints`` at ``now_ms`` (only ever moves forward)."""
        if not endpoints:
            return
        ins = self._unit.dialect.insert(callback_flow)
        stmt = ins.on_conflict_do_update(
            index_elements=[callback_flow.c.endpoint],
            set_={"last_ms": ins.excluded.last_ms},
            where=callback_flow.c.last_ms < ins.excluded.last_ms,
        )
        rows = [{"endpoint": e, "last_ms": now_ms} for e in sorted(endpoints)]
        with self._unit.write() as conn:
            conn.execute(stmt, rows)

    def callbacks_last_ms(self, endpoint: str) -> int | None:
        """When a receiver last took in a callback for ``endpoint`` (epoch ms)."""
        query = sa.select(callback_flow.c.last_ms).where(
            callback_flow.c.endpoint == endpoint
        )
        with self._unit.read() as conn:
            value = conn.scalar(query)
        return None if value is None else int(value)

    # -- status changes since a mark ---------------------------------------------------

    def last_event_id(self) -> int:
        """The newest event's id (0 for none): a mark to read changes from."""
        with self._unit.read() as conn:
            return int(conn.scalar(sa.select(sa.func.max(events.c.id))) or 0)

    def changes_since(self, mark: int, limit: int = 1000) -> list[RecordedChange]:
        """Status changes into processing or a final status after event ``mark``,
        oldest first, whoever applied them; their rows without ``body`` and
        ``result`` (see :data:`WATCH_COLUMNS`)."""
        query = (
            sa.select(
                events.c.id.label("event_id"),
                events.c.old_status.label("event_old"),
                events.c.new_status.label("event_new"),
                events.c.source.label("event_source"),
                *WATCH_COLUMNS,
            )
            .join(tasks, tasks.c.id == events.c.task_id)
            .where(
                events.c.id > mark,
                events.c.kind == EventKind.STATUS.value,
                events.c.new_status.in_(_WATCHED),
            )
            .order_by(events.c.id)
            .limit(limit)
        )
        with self._unit.read() as conn:
            found = conn.execute(query).all()
        # zip, not RowMapping: a third of the cost per row.
        names = [c.name for c in WATCH_COLUMNS]
        return [
            RecordedChange(
                event_id=int(event_id),
                old_status=None if old is None else TaskStatus(old),
                new_status=TaskStatus(new),
                source=str(source),
                task=task_row(
                    dict(zip(names, values, strict=True), body=None, result=None)
                ),
            )
            for event_id, old, new, source, *values in self._unit.paced(found)
        ]
