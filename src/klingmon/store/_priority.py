"""Batch priorities in the store: which queued tasks a claim picks, and changes.

Runs inside the submitter's serialised claim (:meth:`TaskQueue.claim_submissions`):
the order of levels is decided by :func:`klingmon.policy.level_order` from the
waiting batches' stored priorities and times and the caller's ``now_ms``. When every
batch has one priority (the common case) the pick is the plain oldest-first walk of
``(status, id)``, as before priorities existed.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import EventKind, Source, TaskStatus
from klingmon.policy import Waiting, level_order
from klingmon.store._schema import batches, tasks, workers
from klingmon.store._writes import Pending

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["pick_queued", "served", "set_priority"]

_QUEUED = TaskStatus.QUEUED.value
#: A worker whose heartbeat is older than this is taken for dead (as in ``status``).
ALIVE_MS = 30_000


def pick_queued(  # noqa: PLR0917 - the claim's own arguments, passed on
    conn: sa.Connection,
    room: int,
    now_ms: int,
    aging_ms: int,
    ready: Sequence[sa.ColumnElement[bool]],
    scope: int | None = None,
) -> list[int]:
    """Up to ``room`` queued task ids that are ``ready``, in priority order.

    Given ``scope`` (a run that sends one batch), the ids are that batch's share of
    what one claim over every batch would take: the batches that some live worker
    sends (``workers.info.scope``, absent or None: every batch) go first when their
    priority is ahead, so two runs of one batch each follow the rule between them.
    A batch nobody sends holds no slot back.
    """
    first = sa.select(tasks.c.id, tasks.c.batch_id).where(
        tasks.c.status == _QUEUED, *ready
    )
    low, high = conn.execute(
        sa.select(sa.func.min(batches.c.priority), sa.func.max(batches.c.priority))
    ).one()
    if low == high:
        mine = first if scope is None else first.where(tasks.c.batch_id == scope)
        query = mine.order_by(tasks.c.id).limit(room)
        return [row.id for row in conn.execute(query)]
    waiting = _waiting(conn, first)
    if scope is not None:
        sent = _sent_by_others(conn, now_ms)
        waiting = [
            w
            for w in waiting
            if w.batch_id == scope or sent is None or w.batch_id in sent
        ]
    picked: list[tuple[int, int]] = []
    for level in level_order(waiting, now_ms, aging_ms):
        picked += _first_of(conn, first, level, room - len(picked))
        if len(picked) >= room:
            break
    return [i for i, batch in picked if scope is None or batch == scope]


def _waiting(conn: sa.Connection, first: sa.Select[Any]) -> list[Waiting]:
    """The batches with tasks ready to be claimed, with what the rule reads."""
    query = sa.select(
        batches.c.id, batches.c.priority, batches.c.created_ms, batches.c.served_ms
    ).where(first.where(tasks.c.batch_id == batches.c.id).exists())
    return [
        Waiting(int(i), int(p), int(c), None if s is None else int(s))
        for i, p, c, s in conn.execute(query)
    ]


def _sent_by_others(conn: sa.Connection, now_ms: int) -> set[int] | None:
    """The batches live workers send (None: one of them sends every batch)."""
    infos = conn.execute(
        sa.select(workers.c.info).where(
            workers.c.stopped_ms.is_(None),
            workers.c.heartbeat_ms >= now_ms - ALIVE_MS,
        )
    ).scalars()
    sent: set[int] = set()
    for info in infos:
        scope = (info or {}).get("scope")
        if scope is None:
            return None
        sent.add(int(scope))
    return sent


def _first_of(
    conn: sa.Connection, first: sa.Select[Any], batch_ids: list[int], n: int
) -> list[tuple[int, int]]:
    """The ``n`` lowest (task id, batch id) among these batches' (an index range
    each)."""
    runs = [
        [
            (int(i), int(b))
            for i, b in conn.execute(
                first.where(tasks.c.batch_id == batch).order_by(tasks.c.id).limit(n)
            )
        ]
        for batch in batch_ids
    ]
    return list(heapq.merge(*runs))[:n]


def served(conn: sa.Connection, batch_ids: set[int], now_ms: int) -> None:
    """Note that these batches just got slots: their priority's wait starts again."""
    if batch_ids:
        conn.execute(
            batches.update()
            .where(batches.c.id.in_(sorted(batch_ids)))
            .values(served_ms=now_ms)
        )


def set_priority(
    conn: sa.Connection, batch_id: int, priority: int, now_ms: int, by: str
) -> tuple[int, int]:
    """Change a batch's priority; (the old one, how many queued tasks it moves).

    Each task still queued gets a ``priority`` event naming the old and new
    priority and ``by`` (who changed it: ``cli``, ``dashboard``, ``library``); tasks
    already sent are not reordered, so they get none.
    """
    old = conn.execute(
        sa.select(batches.c.priority).where(batches.c.id == batch_id).with_for_update()
    ).scalar_one()
    conn.execute(
        batches.update().where(batches.c.id == batch_id).values(priority=priority)
    )
    if old == priority:
        return int(old), 0
    rows = conn.execute(
        sa.select(tasks.c.id, tasks.c.batch_id)
        .where(tasks.c.batch_id == batch_id, tasks.c.status == _QUEUED)
        .order_by(tasks.c.id)
    ).mappings()
    pending = Pending()
    payload = {"old": int(old), "new": priority, "by": by}
    for row in rows:
        pending.event(
            dict(row), now_ms, Source.LOCAL, EventKind.PRIORITY, None, None, payload
        )
    pending.flush(conn)
    return int(old), len(pending.events)
