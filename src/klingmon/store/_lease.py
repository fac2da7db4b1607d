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
    """
    if limit <= 0:
        return []
    free = sa.or_(tasks.c.lease_owner.is_(None), tasks.c.lease_until_ms <= now_ms)
    pick = (
        sa.select(tasks.c.id)
        .where(due, free)
        .order_by(*order)
        .limit(limit)
        .with_for_update(skip_locked=True)  # SQLite renders nothing here
    )
    claim = (
        tasks.update()
        .where(tasks.c.id.in_(pick.scalar_subquery()), free)
        .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms)
        .returning(*tasks.c)
    )
    with unit.write() as conn:
        rows = [task_row(m) for m in conn.execute(claim).mappings()]
    if len(order) > 1:
        rows.sort(key=lambda r: (r.next_poll_ms or 0, r.id))
    else:
        rows.sort(key=lambda r: r.id)
    return rows
