"""Concurrency pools in the store: slots held per pool, and what fits in one.

Runs inside the submitter's serialised claim (:meth:`TaskQueue.claim_submissions`)
and the reads of ``status``: a task holds ``tasks.slots`` slots of ``tasks.pool``
while it is in flight, or queued and leased to a worker about to send it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import IN_FLIGHT, TaskStatus
from klingmon.policy import Spend, parse_pool, pool_members
from klingmon.store._schema import tasks

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "Placing",
    "PoolFigure",
    "PoolUse",
    "fitting",
    "held",
    "holding",
    "limit_of_workers",
    "queued_needs",
    "slots_taken",
    "spread",
    "units_to_reserve",
]

_QUEUED = TaskStatus.QUEUED.value


@dataclass(frozen=True, slots=True)
class PoolUse:
    """One pool as the store sees it: slots held and whether work waits in it."""

    pool: str
    #: Slots held: tasks Kling holds, creates under way, queued tasks leased to send.
    held: int
    #: Tasks held (an image task of ``n`` is one task, ``n`` slots).
    tasks: int
    #: The fewest slots a queued task of the pool takes (0: none is queued).
    need: int = 0

    @property
    def queued(self) -> bool:
        return self.need > 0

    def fits(self, size: int) -> bool:
        """Whether a queued task could go now in a pool of ``size`` slots."""
        return self.queued and (not self.held or self.held + self.need <= size)


@dataclass(frozen=True, slots=True)
class PoolFigure:
    """One pool for ``status``, the dashboard and ``/metrics``."""

    pool: str
    #: Slots held now (an image task of ``n`` holds ``n``), and by how many tasks.
    held: int
    tasks: int
    #: Tasks waiting to be sent in it.
    queued: int
    #: The limit the live workers hold for it (the smallest; learned from 1303s,
    #: up to its size); None when no live worker has said.
    limit: int | None


def limit_of_workers(pool: str, infos: Sequence[Mapping[str, Any]]) -> int | None:
    """The smallest limit live workers' heartbeats name for ``pool`` (a worker that
    names none gives its ``slots``, the size of any pool not configured); for the
    queue of a batch on several accounts, the sum of its accounts' pools."""
    members = pool_members(pool)
    if len(members) > 1:
        limits = [limit_of_workers(m, infos) for m in members]
        return None if None in limits else sum(n or 0 for n in limits)
    found = []
    for info in infos:
        named = info.get("pools")
        limit = named.get(pool) if isinstance(named, dict) else None
        if limit is None:
            limit = info.get("slots")
        if isinstance(limit, int):
            found.append(limit)
    return min(found) if found else None


def holding(now_ms: int) -> sa.ColumnElement[bool]:
    """What holds a slot: in flight, or queued and leased by a worker to send."""
    return sa.or_(
        tasks.c.status.in_(IN_FLIGHT),
        sa.and_(
            tasks.c.status == _QUEUED,
            tasks.c.lease_owner.is_not(None),
            tasks.c.lease_until_ms > now_ms,
        ),
    )


def held(conn: sa.Connection, now_ms: int) -> dict[str, tuple[int, int]]:
    """Per pool: (slots held, tasks holding them)."""
    query = (
        sa.select(tasks.c.pool, sa.func.sum(tasks.c.slots), sa.func.count())
        .where(holding(now_ms))
        .group_by(tasks.c.pool)
    )
    return {str(p): (int(s or 0), int(n)) for p, s, n in conn.execute(query)}


def queued_needs(conn: sa.Connection, batch_id: int | None = None) -> dict[str, int]:
    """Per pool queued tasks wait in (label order), the fewest slots one takes.

    Two index seeks per pool on ``(status, pool, slots)`` (the next pool past the
    last found, then its least ``slots``), not a walk of the backlog.
    """
    scope = [] if batch_id is None else [tasks.c.batch_id == batch_id]
    queued = [tasks.c.status == _QUEUED, *scope]
    found: dict[str, int] = {}
    last: str | None = None
    while True:
        after = [] if last is None else [tasks.c.pool > last]
        pool = conn.execute(
            sa.select(sa.func.min(tasks.c.pool)).where(*queued, *after)
        ).scalar()
        if pool is None:
            return found
        last = str(pool)
        least = conn.execute(
            sa.select(sa.func.min(tasks.c.slots)).where(*queued, tasks.c.pool == last)
        ).scalar()
        found[last] = max(1, int(least or 1))


def slots_taken(conn: sa.Connection, ids: Sequence[int]) -> int:
    """The slots these tasks take between them."""
    if not ids:
        return 0
    total = conn.execute(
        sa.select(sa.func.sum(tasks.c.slots)).where(tasks.c.id.in_(list(ids)))
    ).scalar()
    return int(total or 0)


@dataclass(slots=True)
class Placing:
    """What the claim's spread keeps between pools: where each task went, and the
    units each account with caps of its own may still reserve."""

    #: Task id to the member pool it goes in (``NAME:MODEL/PACK``).
    placed: dict[int, str]
    #: Account to units left under its own caps (an account not here has none).
    room: dict[str, float]

    def affords(self, pool: str, units: float | None) -> bool:
        """Whether ``pool``'s account can pay ``units`` (unknown: only uncapped)."""
        left = self.room.get(parse_pool(pool).account)
        if left is None:
            return True
        return units is not None and units <= left + 1e-9

    def place(self, task_id: int, pool: str, units: float | None) -> None:
        self.placed[task_id] = pool
        self.spend(pool, units or 0.0)

    def spend(self, pool: str, units: float) -> None:
        """``units`` more reserved on ``pool``'s account in this claim."""
        account = parse_pool(pool).account
        if account in self.room:
            self.room[account] -= units


def units_to_reserve(conn: sa.Connection, ids: Sequence[int]) -> float:
    """The quoted units of those of ``ids`` not reserved yet (a task requeued after
    a 1303 holds its reservation already)."""
    if not ids:
        return 0.0
    total = conn.execute(
        sa.select(sa.func.sum(tasks.c.quoted_units)).where(
            tasks.c.id.in_(list(ids)),
            sa.or_(tasks.c.spend.is_(None), tasks.c.spend != Spend.RESERVED.value),
        )
    ).scalar()
    return float(total or 0.0)


def spread(
    conn: sa.Connection,
    ids: Sequence[int],
    free: dict[str, int],
    use: dict[str, int],
    placing: Placing,
) -> list[int]:
    """The first of ``ids`` (in their order) that fit in some member pool, each
    put in the member with most free slots (``free``, then the lower share held,
    then the label) among those whose account can pay its quote; ``free`` and
    ``use`` count what is placed.

    As in :func:`fitting`, the walk stops at the first task no member has room
    for (or none that can pay for it), and an empty member takes one whatever its
    slots. A task no member's account can pay for still goes to the freest: the
    claim's spend check then holds its batch, naming the caps.
    """
    if not ids:
        return []
    need = {
        int(i): (max(1, int(n or 1)), q)
        for i, n, q in conn.execute(
            sa.select(tasks.c.id, tasks.c.slots, tasks.c.quoted_units).where(
                tasks.c.id.in_(list(ids))
            )
        ).all()
    }
    taken: list[int] = []
    for task_id in ids:
        slots, units = need.get(task_id, (1, None))
        fits = [m for m in free if free[m] >= slots or not use.get(m, 0)]
        if not fits:
            break
        payers = [m for m in free if placing.affords(m, units)]
        paid = [m for m in fits if m in payers] if payers else fits
        if not paid:  # an account that can pay has no slot yet: wait for it
            break
        size = {m: free[m] + use.get(m, 0) for m in paid}
        best = min(paid, key=lambda m: (-free[m], use.get(m, 0) / max(1, size[m]), m))
        placing.place(task_id, best, units)
        free[best] -= slots
        use[best] = use.get(best, 0) + slots
        taken.append(task_id)
    return taken


def fitting(
    conn: sa.Connection, ids: Sequence[int], room: int, *, empty: bool
) -> list[int]:
    """The first of ``ids`` (in their order) whose slots fit in ``room``.

    The walk stops at the first that does not fit, so a task of many slots is not
    passed over forever by smaller ones behind it. ``empty``: the pool holds
    nothing, so the first task goes whatever it takes (one bigger than the pool
    would otherwise never be sent; Kling decides).
    """
    if not ids:
        return []
    need = dict(
        conn.execute(
            sa.select(tasks.c.id, tasks.c.slots).where(tasks.c.id.in_(list(ids)))
        ).all()
    )
    taken: list[int] = []
    used = 0
    for task_id in ids:
        slots = max(1, int(need.get(task_id, 1)))
        if used + slots > room and not (empty and not taken):
            break
        taken.append(task_id)
        used += slots
    return taken
