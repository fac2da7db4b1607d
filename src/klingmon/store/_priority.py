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
from klingmon.store._schema import batches, tasks
from klingmon.store._writes import Pending

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["pick_queued", "served", "set_priority"]

_QUEUED = TaskStatus.QUEUED.value


def pick_queued(
    conn: sa.Connection,
    room: int,
    now_ms: int,
    aging_ms: int,
    ready: Sequence[sa.ColumnElement[bool]],
) -> list[int]:
    """Up to ``room`` queued task ids that are ``ready``, in priority order."""
    first = sa.select(tasks.c.id).where(tasks.c.status == _QUEUED, *ready)
    low, high = conn.execute(
        sa.select(sa.func.min(batches.c.priority), sa.func.max(batches.c.priority))
    ).one()
    if low == high:
        return list(conn.execute(first.order_by(tasks.c.id).limit(room)).scalars())
    waiting = [
        Waiting(int(i), int(p), int(c), None if s is None else int(s))
        for i, p, c, s in conn.execute(
            sa.select(
                batches.c.id,
                batches.c.priority,
                batches.c.created_ms,
                batches.c.served_ms,
            ).where(first.where(tasks.c.batch_id == batches.c.id).exists())
        )
    ]
    ids: list[int] = []
    for level in level_order(waiting, now_ms, aging_ms):
        ids += _first_of(conn, first, level, room - len(ids))
        if len(ids) >= room:
            break
    return ids


def _first_of(
    conn: sa.Connection, first: sa.Select[Any], batch_ids: list[int], n: int
) -> list[int]:
    """The ``n`` lowest task ids among these batches' (one index range each)."""
    runs = [
        list(
            conn.execute(
                first.where(tasks.c.batch_id == b).order_by(tasks.c.id).limit(n)
            ).scalars()
        )
        for b in batch_ids
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
