"""Leasing tasks: the claim the task queue and the watch list both make."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.store._convert import task_row
from klingmon.store._schema import tasks

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.store._base import UnitOfWork
    from klingmon.store._rows import TaskRow

__all__ = ["claim_tasks"]

#: Rows leased a transaction: a claim of a thousand holds SQLite's one write slot
#: (which a callback's commit waits for) a few milliseconds at a time, not 35.
CLAIM_CHUNK = 100


def claim_tasks(
    unit: UnitOfWork,
    owner: str,
    now_ms: int,
    lease_ms: int,
    limit: int,
    *,
    due: sa.ColumnElement[bool],
    order: Sequence[sa.ColumnElement[Any]],
) -> list[TaskRow]:
    """Lease up to ``limit`` tasks that are ``due`` and not leased, in ``order``.

    ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: workers claiming at once take
    different tasks; SQLite renders nothing there and lets one writer in at a time.
    :data:`CLAIM_CHUNK` rows a transaction, each the next due ones (those before
    are leased now), so the tasks claimed are the same; rows are built once the
    last is committed, with pauses for answers (:meth:`UnitOfWork.paced`).
    """
    free = sa.or_(tasks.c.lease_owner.is_(None), tasks.c.lease_until_ms <= now_ms)
    found: list[sa.RowMapping] = []
    while len(found) < limit:
        want = min(CLAIM_CHUNK, limit - len(found))
        pick = (
            sa.select(tasks.c.id)
            .where(due, free)
            .order_by(*order)
            .limit(want)
            .with_for_update(skip_locked=True)  # SQLite renders nothing here
        )
        claim = (
            tasks.update()
            .where(tasks.c.id.in_(pick.scalar_subquery()), free)
            .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms)
            .returning(*tasks.c)
        )
        with unit.write() as conn:
            chunk = conn.execute(claim).mappings().all()
        found += chunk
        if len(chunk) < want:
            break
    rows = [task_row(m) for m in unit.paced(found)]
    if len(order) > 1:
        rows.sort(key=lambda r: (r.next_poll_ms or 0, r.id))
    else:
        rows.sort(key=lambda r: r.id)
    return rows
