"""The durable store: every fact about every task, committed before it is acted on.

Sync SQLAlchemy Core over SQLite (WAL) or PostgreSQL. Each public method is one short
transaction. Work is shared between workers through leases: a claim sets
``lease_owner``/``lease_until_ms``; a dead worker's leases simply expire. On PostgreSQL
claims lock with ``FOR UPDATE SKIP LOCKED``; on SQLite ``BEGIN IMMEDIATE`` serialises
writers, which gives the same guarantee.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal, Self

import sqlalchemy as sa

from klingmon.domain import TaskStatus
from klingmon.errors import NameTakenError, StoreError
from klingmon.store import _database, _schema
from klingmon.store._base import reason
from klingmon.store._cancel import Cancels
from klingmon.store._convert import (
    event_row,
    task_row,
    wire,
)
from klingmon.store._downloads import Downloads
from klingmon.store._fleet import Fleet
from klingmon.store._flow import Flow
from klingmon.store._refs import Refs
from klingmon.store._rows import BatchRow, Change, EventRow, TaskRow
from klingmon.store._schema import (
    batches,
    counters,
    downloads,
    events,
    locks,
    meta,
    outbox,
    tasks,
    webhook_deliveries,
)
from klingmon.store._submission import Submission
from klingmon.store._views import Views
from klingmon.store._watching import Watching
from klingmon.store._writes import (
    ACTIVE_STATES,
    OUTBOX_KINDS,
    QUEUED_STATES,
    Pending,
    add_polls,
    apply_one,
    batch_row,
    free_name,
    lock_task,
    new_task_values,
    record_event,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence
    from types import TracebackType

    from klingmon.store._rows import NewTask, Observation

__all__ = ["OUTBOX_KINDS", "Store"]

log = logging.getLogger(__name__)

#: Every column but the JSON ones (see :meth:`Store.active`).
_WATCH_COLUMNS = [c for c in tasks.c if c.name not in ("body", "result")]
# Built once: building a statement costs more than running it on a few rows.
_LOCK_IDS = (
    sa.select(tasks.c.id)
    .where(tasks.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(tasks.c.id)
    .with_for_update()
)
_LOCK_ROWS = (
    sa.select(tasks)
    .where(tasks.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(tasks.c.id)  # one lock order: no deadlock between workers
    .with_for_update()
)


class Store(Submission, Downloads, Fleet, Views, Refs, Cancels, Watching, Flow):
    """Open with :meth:`open`; use as a context manager or call :meth:`close`."""

    # -- lifecycle -----------------------------------------------------------------

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

    def close(self) -> None:
        self._engine.dispose()

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

    # -- batches -------------------------------------------------------------------

    def create_batch(
        self,
        name: str | None,
        tasks: Sequence[NewTask],
        now_ms: int,
        *,
        defaults: Mapping[str, Any] | None = None,
    ) -> BatchRow:
        """Store a batch and all its tasks in one transaction: all or nothing.

        An adopted task (``NewTask.task`` set: ``track``, ``import``) starts where
        Kling says it is, and that status is recorded like any other: an event for
        the hooks and, when it has already succeeded, its files owed.
        """
        with self._write() as conn:
            if name is None:
                name = free_name(conn, now_ms)
            elif conn.scalar(sa.select(batches.c.id).where(batches.c.name == name)):
                raise NameTakenError(f"a batch named {name!r} already exists")
            batch_id = conn.execute(
                batches.insert().returning(batches.c.id),
                {
                    "name": name,
                    "created_ms": now_ms,
                    "defaults": dict(defaults or {}),
                },
            ).scalar_one()
            rows = [
                new_task_values(batch_id, seq, new, now_ms)
                for seq, new in enumerate(tasks, start=1)
            ]
            if rows:
                conn.execute(_schema.tasks.insert(), rows)
            adopted = {seq: new for seq, new in enumerate(tasks, start=1) if new.task}
            if adopted:
                _record_adopted(conn, batch_id, adopted, now_ms)
        self.notify()  # workers on other machines start on it at once
        return BatchRow(batch_id, name, now_ms, dict(defaults or {}))

    def batches(self) -> list[BatchRow]:
        with self._read() as conn:
            rows = conn.execute(sa.select(batches).order_by(batches.c.id)).mappings()
            return [batch_row(m) for m in rows]

    def batch(self, ref: str | int) -> BatchRow | None:
        """A batch by id, or by name (a digit string is tried as an id first)."""
        with self._read() as conn:
            m = None
            if isinstance(ref, int) or ref.isdigit():
                m = (
                    conn.execute(sa.select(batches).where(batches.c.id == int(ref)))
                    .mappings()
                    .first()
                )
            if m is None and isinstance(ref, str):
                m = (
                    conn.execute(sa.select(batches).where(batches.c.name == ref))
                    .mappings()
                    .first()
                )
            return None if m is None else batch_row(m)

    # -- tasks ---------------------------------------------------------------------

    def task(self, ref: int | str) -> TaskRow | None:
        """By local id (int), else Kling's ``task_id``, else ``external_task_id``."""
        with self._read() as conn:
            clauses = (
                [tasks.c.id == ref]
                if isinstance(ref, int)
                else [tasks.c.task_id == ref, tasks.c.external_task_id == ref]
            )
            for clause in clauses:
                m = (
                    conn.execute(
                        sa.select(tasks).where(clause).order_by(tasks.c.id).limit(1)
                    )
                    .mappings()
                    .first()
                )
                if m is not None:
                    return task_row(m)
        return None

    def tasks(
        self,
        batch_id: int | None = None,
        statuses: Collection[TaskStatus] | None = None,
    ) -> list[TaskRow]:
        query = sa.select(tasks).order_by(tasks.c.id)
        if batch_id is not None:
            query = query.where(tasks.c.batch_id == batch_id)
        if statuses is not None:
            query = query.where(tasks.c.status.in_([s.value for s in statuses]))
        with self._read() as conn:
            return [task_row(m) for m in conn.execute(query).mappings()]

    def count_by_status(
        self,
        batch_id: int | None = None,
        statuses: Collection[TaskStatus] | None = None,
    ) -> dict[TaskStatus, int]:
        """Tasks per status; given ``statuses``, only those rows are read."""
        query = sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)
        if batch_id is not None:
            query = query.where(tasks.c.batch_id == batch_id)
        if statuses is not None:
            query = query.where(tasks.c.status.in_([s.value for s in statuses]))
        with self._read() as conn:
            return {TaskStatus(s): n for s, n in conn.execute(query)}

    def has_tasks(
        self, statuses: Collection[TaskStatus], batch_id: int | None = None
    ) -> bool:
        """Whether any task is in one of ``statuses``: one index probe, not a count."""
        query = sa.select(tasks.c.id).where(
            tasks.c.status.in_([s.value for s in statuses])
        )
        if batch_id is not None:
            query = query.where(tasks.c.batch_id == batch_id)
        with self._read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    # -- monitoring ----------------------------------------------------------------

    def claim_due(
        self,
        owner: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        endpoint: str | None = None,
    ) -> list[TaskRow]:
        """Lease up to ``limit`` active tasks whose poll is due, earliest first."""
        due = sa.and_(tasks.c.status.in_(ACTIVE_STATES), tasks.c.next_poll_ms <= now_ms)
        if endpoint is not None:
            due = sa.and_(due, tasks.c.endpoint == endpoint)
        order = [tasks.c.next_poll_ms, tasks.c.id]
        return self._claim(owner, now_ms, lease_ms, limit, due=due, order=order)

    def revisions(self) -> tuple[str | None, str | None]:
        """(the database's schema revision, the newest this klingmon knows)."""
        return _database.revisions(self._engine)

    def due_endpoints(self, now_ms: int) -> list[str]:
        """Endpoints with an active task due for a poll and not leased by anyone."""
        query = (
            sa.select(tasks.c.endpoint)
            .where(
                tasks.c.status.in_(ACTIVE_STATES),
                tasks.c.next_poll_ms <= now_ms,
                sa.or_(tasks.c.lease_owner.is_(None), tasks.c.lease_until_ms <= now_ms),
            )
            .distinct()
            .order_by(tasks.c.endpoint)
        )
        with self._read() as conn:
            return list(conn.execute(query).scalars())

    def active(
        self, endpoint: str | None = None, *, ids: Collection[int] | None = None
    ) -> list[TaskRow]:
        """Every task Kling holds (submitted or processing), by id, for watching;
        given ``ids``, only those of them.

        Their ``body`` is left empty and ``result`` None: watching needs neither,
        and decoding them was most of the cost of a sweep over hundreds of tasks.
        """
        query = (
            sa.select(*_WATCH_COLUMNS)
            .where(tasks.c.status.in_(ACTIVE_STATES))
            .order_by(tasks.c.id)
        )
        if endpoint is not None:
            query = query.where(tasks.c.endpoint == endpoint)
        if ids is not None:
            query = query.where(tasks.c.id.in_(sorted(ids)))
        names = [c.name for c in _WATCH_COLUMNS]
        with self._read() as conn:
            found = conn.execute(query).all()
        return [
            task_row(dict(zip(names, values, strict=True), body=None, result=None))
            for values in found
        ]

    def apply(self, observations: Sequence[Observation], now_ms: int) -> list[Change]:
        """Apply what polls, sweeps and callbacks saw, in one transaction.

        Ranks only rise (:func:`judge`); an unknown status is a ``drift`` event; a
        stale or backwards status is a ``stale`` event only when it differs from the
        stored one, so identical polls leave no trace but ``polls``. Only real status
        changes are returned.
        """
        if not observations:
            return []
        ids = sorted({o.task_id for o in observations})
        planned: list[tuple[TaskRow, TaskStatus, TaskStatus, int]] = []
        polled: list[int] = []
        pending = Pending()
        with self._write() as conn:
            found = conn.execute(_LOCK_ROWS, {"ids": ids})
            keys = tuple(found.keys())
            rows: dict[int, dict[str, Any]] = {}
            for values in found:  # zip, not RowMapping: half the cost per row
                locked = dict(zip(keys, values, strict=True))
                rows[locked["id"]] = locked
            for obs in observations:
                row = rows.get(obs.task_id)
                if row is None:
                    log.warning("store.apply.unknown_task", extra={"task": obs.task_id})
                    continue
                change = apply_one(row, obs, now_ms, pending, polled)
                if change is not None:  # the row as this change left it
                    planned.append((task_row(row), *change))
            event_ids = pending.flush(conn)
            add_polls(conn, polled)
        return [
            Change(after, old, new, event_ids[index])
            for after, old, new, index in planned
        ]

    def schedule(self, items: Sequence[tuple[int, int]]) -> None:
        """Set each task's next poll (``(local id, due ms)``) and release its lease."""
        if not items:
            return
        stmt = (
            tasks.update()
            .where(tasks.c.id == sa.bindparam("b_id"))
            .values(
                next_poll_ms=sa.bindparam("b_next"),
                lease_owner=None,
                lease_until_ms=None,
            )
        )
        # In id order, the order apply() locks in: two writers never wait on each other.
        params = [{"b_id": i, "b_next": due} for i, due in sorted(items)]
        with self._write() as conn:
            conn.execute(stmt, params)

    def lock_tasks(self, ids: Sequence[int]) -> None:
        """Lock these tasks for the rest of the transaction, in id order.

        A transaction that then writes them in any other order waits on nobody
        holding one while wanting another: every multi-task writer takes its task
        locks in id order (PostgreSQL; SQLite lets one writer in at a time).
        """
        if ids and self._pg:
            with self._write() as conn:
                conn.execute(_LOCK_IDS, {"ids": sorted(set(ids))}).all()

    def release(self, owner: str) -> None:
        """Drop every lease and lock ``owner`` holds (a clean shutdown)."""
        with self._write() as conn:
            if self._pg:  # in id order, as every other multi-task writer
                held = sa.select(tasks.c.id).where(tasks.c.lease_owner == owner)
                conn.execute(held.order_by(tasks.c.id).with_for_update()).all()
            for table in (tasks, outbox, downloads):
                conn.execute(
                    table.update()
                    .where(table.c.lease_owner == owner)
                    .values(lease_owner=None, lease_until_ms=None)
                )
            conn.execute(locks.delete().where(locks.c.owner == owner))

    def lease_counts(self, now_ms: int) -> dict[str, int]:
        """Live leases (tasks, outbox, downloads) per owner."""
        found: dict[str, int] = {}
        with self._read() as conn:
            for table in (tasks, outbox, downloads):
                query = (
                    sa.select(table.c.lease_owner, sa.func.count())
                    .where(table.c.lease_until_ms > now_ms)
                    .group_by(table.c.lease_owner)
                )
                for owner, n in conn.execute(query):
                    found[owner] = found.get(owner, 0) + n
        return found

    def lease_owners(self) -> set[str]:
        """Every owner that holds a lease now (live or dead)."""
        with self._read() as conn:
            found: set[str] = set()
            for table in (tasks, outbox, downloads):
                query = sa.select(table.c.lease_owner).where(
                    table.c.lease_owner.is_not(None)
                )
                found.update(conn.execute(query.distinct()).scalars())
            found.update(conn.execute(sa.select(locks.c.owner).distinct()).scalars())
        return found

    def next_due_ms(
        self, *, include_queued: bool = True, queued_batch_id: int | None = None
    ) -> int | None:
        """The earliest time any work falls due, or None when there is none.

        Active tasks count with their ``next_poll_ms``; queued and submitting tasks
        with their not-before time, or, when one has none, its ``created_ms`` (so a
        waiting queue reads as due already; callers gate it on free slots). Leases
        are not considered: a leased task is due again when its lease ends at the
        latest, and its holder reschedules it. Given ``queued_batch_id``, only that
        batch's waiting tasks count (a scoped engine sends no other).
        """
        active = sa.select(sa.func.min(tasks.c.next_poll_ms)).where(
            tasks.c.status.in_(ACTIVE_STATES)
        )
        waiting: sa.ColumnElement[bool] = tasks.c.status.in_(QUEUED_STATES)
        if queued_batch_id is not None:
            waiting = sa.and_(waiting, tasks.c.batch_id == queued_batch_id)
        # Two index probes, not a walk of the whole queue: one task without a
        # not-before time already makes the queue due.
        queued_later = sa.select(sa.func.min(tasks.c.next_poll_ms)).where(
            waiting, tasks.c.next_poll_ms.is_not(None)
        )
        queued_now = (
            sa.select(tasks.c.created_ms)
            .where(waiting, tasks.c.next_poll_ms.is_(None))
            .limit(1)
        )
        with self._read() as conn:
            found = [conn.scalar(active)]
            if include_queued:
                found += [conn.scalar(queued_later), conn.scalar(queued_now)]
        values = [int(v) for v in found if v is not None]
        return min(values) if values else None

    def flag(
        self,
        task_id: int,
        kind: Literal["stuck", "watch_timeout"],
        now_ms: int,
        payload: Mapping[str, Any],
    ) -> EventRow | None:
        """Raise a flag once: the first call records an event, later ones get None."""
        column = tasks.c[kind]
        with self._write() as conn:
            done = conn.execute(
                tasks.update()
                .where(tasks.c.id == task_id, column.is_(sa.false()))
                .values({column: True})
            ).rowcount
            if not done:
                return None
            row = lock_task(conn, task_id)
            status = TaskStatus(row["status"])
            event_id = record_event(
                conn, row, now_ms, "local", kind, status, status, dict(payload)
            )
            m = conn.execute(
                sa.select(events).where(events.c.id == event_id)
            ).mappings()
            return event_row(m.one())

    # -- callbacks (receiver) ------------------------------------------------------

    def record_delivery(
        self, webhook_id: str, task_id: int | None, now_ms: int
    ) -> bool:
        """Remember a Standard Webhooks ``webhook-id``; False when seen before."""
        stmt = (
            self._insert(webhook_deliveries)
            .values(webhook_id=webhook_id[:200], received_ms=now_ms, task_id=task_id)
            .on_conflict_do_nothing(index_elements=[webhook_deliveries.c.webhook_id])
        )
        with self._write() as conn:
            return bool(conn.execute(stmt).rowcount)

    def note(
        self,
        task_id: int,
        now_ms: int,
        source: str,
        kind: str,
        payload: Mapping[str, Any],
    ) -> int:
        """Append an event that changes nothing (a callback's unconfirmed hint)."""
        with self._write() as conn:
            row = lock_task(conn, task_id)
            status = TaskStatus(row["status"])
            return record_event(
                conn, row, now_ms, source, kind, status, None, dict(payload)
            )

    def meta_setdefault(self, key: str, value: str) -> str:
        """Store ``value`` unless ``key`` has one; return the value that holds."""
        stmt = (
            self._insert(meta)
            .values(key=key, value=value)
            .on_conflict_do_nothing(index_elements=[meta.c.key])
        )
        with self._write() as conn:
            conn.execute(stmt)
            return str(conn.scalar(sa.select(meta.c.value).where(meta.c.key == key)))

    def counter_totals(self) -> dict[str, int]:
        """Every counter summed over all batches (for metrics)."""
        query = sa.select(counters.c.name, sa.func.sum(counters.c.value)).group_by(
            counters.c.name
        )
        with self._read() as conn:
            return {name: int(value or 0) for name, value in conn.execute(query)}


def _record_adopted(
    conn: sa.Connection, batch_id: int, adopted: Mapping[int, NewTask], now_ms: int
) -> None:
    """The status each adopted task (by ``seq``) came in with, as a change from
    nothing: its event, and its files when it has succeeded already."""
    pending = Pending()
    found = conn.execute(
        sa.select(tasks).where(
            tasks.c.batch_id == batch_id, tasks.c.seq.in_(list(adopted))
        )
    ).mappings()
    for m in found:
        row = dict(m)
        task = adopted[row["seq"]].task
        assert task is not None  # noqa: S101 - only adopted tasks are in the map
        status = TaskStatus(row["status"])
        pending.change(row, status, now_ms, "local", wire(task), old=None)
    pending.flush(conn)
