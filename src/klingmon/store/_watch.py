"""The watch list: tasks Kling holds, when each is polled next, what was seen.

Polls, sweeps and callbacks all end in :meth:`WatchList.apply`, one transaction
that moves each task forward and writes what its change obliges (events for the
outbox, owed files). Tasks are shared between workers through leases: a claim sets
``lease_owner``/``lease_until_ms``; a dead worker's leases simply expire.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from klingmon.domain import POLL_SOURCES, TaskStatus
from klingmon.store._convert import event_row, task_row
from klingmon.store._lease import claim_tasks
from klingmon.store._refs import WATCHED, task_ref
from klingmon.store._rows import Change, EventRow, TaskRef, TaskRow
from klingmon.store._schema import WATCH_COLUMNS, events, tasks
from klingmon.store._spend import HELD_BATCHES
from klingmon.store._writes import (
    ACTIVE_STATES,
    Pending,
    add_polls,
    apply_one,
    changes_nothing,
    lock_task,
    record_event,
)

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

    from klingmon.store._base import UnitOfWork
    from klingmon.store._rows import Observation

__all__ = ["WatchList"]

log = logging.getLogger(__name__)

# Built once: building a statement costs more than running it on a few rows.
_LOCK_ROWS = (
    sa.select(tasks)
    .where(tasks.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(tasks.c.id)  # one lock order: no deadlock between workers
    .with_for_update()
)


#: What :func:`changes_nothing` compares an observation with.
_STORED = sa.select(
    tasks.c.id, tasks.c.status, tasks.c.task_id, tasks.c.kling_updated_ms
).where(tasks.c.id.in_(sa.bindparam("ids", expanding=True)))


#: Tasks per write transaction of :meth:`WatchList.apply` and ``schedule``: the
#: longest a callback's commit waits for in ``klingmon serve``. Beside a busy
#: engine, 50 held SQLite's one write slot for up to 25 ms; 10 hold it a few.
_CHUNK = 10
#: Tasks per statement that only counts polls (one ``UPDATE … WHERE id IN``).
_COUNT_CHUNK = 200


class WatchList:
    """Tasks at Kling: due polls, what polls saw, flags and notes."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

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
        return claim_tasks(
            self._unit, owner, now_ms, lease_ms, limit, due=due, order=order
        )

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
        with self._unit.read() as conn:
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
            sa.select(*WATCH_COLUMNS)
            .where(tasks.c.status.in_(ACTIVE_STATES))
            .order_by(tasks.c.id)
        )
        if endpoint is not None:
            query = query.where(tasks.c.endpoint == endpoint)
        if ids is not None:
            query = query.where(tasks.c.id.in_(sorted(ids)))
        names = [c.name for c in WATCH_COLUMNS]
        with self._unit.read() as conn:
            found = conn.execute(query).all()
        return [
            task_row(dict(zip(names, values, strict=True), body=None, result=None))
            for values in self._unit.paced(found)
        ]

    def watched(self, endpoint: str) -> list[TaskRef]:
        """Every task Kling holds on ``endpoint``, by id: what a list page is
        matched against, without building hundreds of full rows per sweep."""
        with self._unit.read() as conn:
            found = conn.execute(WATCHED, {"endpoint": endpoint}).all()
        return [task_ref(v) for v in self._unit.paced(found)]

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
        # Queued tasks of a held batch (awaiting approval, paused) are due never.
        waiting: sa.ColumnElement[bool] = sa.or_(
            tasks.c.status == TaskStatus.SUBMITTING.value,
            sa.and_(
                tasks.c.status == TaskStatus.QUEUED.value,
                tasks.c.batch_id.not_in(HELD_BATCHES),
            ),
        )
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
        with self._unit.read() as conn:
            found = [conn.scalar(active)]
            if include_queued:
                found += [conn.scalar(queued_later), conn.scalar(queued_now)]
        values = [int(v) for v in found if v is not None]
        return min(values) if values else None

    def apply(self, observations: Sequence[Observation], now_ms: int) -> list[Change]:
        """Apply what polls, sweeps and callbacks saw, a transaction per few dozen
        tasks (a task's observations always in one, in their order).

        Ranks only rise (:func:`judge`); an unknown status is a ``drift`` event; a
        stale or backwards status is a ``stale`` event only when it differs from the
        stored one, so identical polls leave no trace but ``polls``. Only real status
        changes are returned. Short transactions keep SQLite's one writer slot free
        for the receiver: a 500-task sweep in one would hold every callback behind it.

        Most polls of a round say again what the store holds: those are only
        counted, in one statement per few hundred, without locking their rows (one
        changed meanwhile, by a callback, is newer than what this round saw; judged
        under its lock, the observation would at most have been a ``stale`` event).
        """
        # Each task's observations, with their places in the order observed.
        by_task: dict[int, list[tuple[int, Observation]]] = defaultdict(list)
        for index, obs in enumerate(observations):
            by_task[obs.task_id].append((index, obs))
        # Only polls: a callback mostly brings news, and the receiver's answers
        # would pay the read for nothing.
        polls = {
            i: pairs
            for i, pairs in by_task.items()
            if all(obs.source in POLL_SOURCES for _, obs in pairs)
        }
        quiet = self._changing_nothing(polls, now_ms) if polls else set()
        polled = [i for i in sorted(quiet) for _ in by_task[i]]
        for start in range(0, len(polled), _COUNT_CHUNK):
            with self._unit.write() as conn:
                add_polls(conn, polled[start : start + _COUNT_CHUNK])
        ids = sorted(by_task.keys() - quiet)
        changes: list[Change] = []
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            # In the order observed: the changes come back in it.
            seen = sorted(pair for i in chunk for pair in by_task[i])
            changes += self._apply(chunk, [obs for _, obs in seen], now_ms)
        return changes

    def _changing_nothing(
        self, by_task: Mapping[int, Sequence[tuple[int, Observation]]], now_ms: int
    ) -> set[int]:
        """The tasks whose every observation :func:`changes_nothing`, by a read."""
        ids = sorted(by_task)
        quiet: set[int] = set()
        with self._unit.read() as conn:
            for start in range(0, len(ids), _COUNT_CHUNK):
                part = ids[start : start + _COUNT_CHUNK]
                for found in conn.execute(_STORED, {"ids": part}):
                    stored = found._asdict()
                    if all(
                        changes_nothing(stored, obs, now_ms)
                        for _, obs in by_task[found.id]
                    ):
                        quiet.add(found.id)
        return quiet

    def _apply(
        self, ids: list[int], observations: Sequence[Observation], now_ms: int
    ) -> list[Change]:
        planned: list[tuple[TaskRow, TaskStatus, TaskStatus, int]] = []
        polled: list[int] = []
        pending = Pending()
        with self._unit.write() as conn:
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
        for start in range(0, len(params), _CHUNK):  # short transactions, as apply's
            with self._unit.write() as conn:
                conn.execute(stmt, params[start : start + _CHUNK])

    def pull_in(self, due_ms: int, now_ms: int) -> int:
        """Bring every active task's next poll forward to ``due_ms`` at the latest
        (one not leased by anyone): the schedule has tightened for all of them, as
        when the last queued task has gone out. Returns how many moved."""
        stmt = tasks.update().where(
            tasks.c.status.in_(ACTIVE_STATES),
            sa.or_(tasks.c.next_poll_ms.is_(None), tasks.c.next_poll_ms > due_ms),
            sa.or_(tasks.c.lease_owner.is_(None), tasks.c.lease_until_ms <= now_ms),
            tasks.c.watch_timeout.is_(sa.false()),
        )
        with self._unit.write() as conn:
            return conn.execute(stmt.values(next_poll_ms=due_ms)).rowcount or 0

    def flag(
        self,
        task_id: int,
        kind: Literal["stuck", "watch_timeout"],
        now_ms: int,
        payload: Mapping[str, Any],
    ) -> EventRow | None:
        """Raise a flag once: the first call records an event, later ones get None."""
        column = tasks.c[kind]
        with self._unit.write() as conn:
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

    def note(
        self,
        task_id: int,
        now_ms: int,
        source: str,
        kind: str,
        payload: Mapping[str, Any],
    ) -> int:
        """Append an event that changes nothing (a callback's unconfirmed hint)."""
        with self._unit.write() as conn:
            row = lock_task(conn, task_id)
            status = TaskStatus(row["status"])
            return record_event(
                conn, row, now_ms, source, kind, status, None, dict(payload)
            )
