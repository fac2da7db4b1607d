"""Figures for the CLI, the dashboard and metrics: reports, summaries, counters.

The dashboard polls :meth:`Reports.change_mark` several times a second per open
page, so it is a handful of ``max``/``count`` lookups on indexed columns. Summaries
are grouped in SQL: one scan of ``tasks`` for every batch at once. A whole report
is built by :mod:`klingmon.store._report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import IN_FLIGHT, TERMINAL, TaskStatus
from klingmon.store import _pools, _report
from klingmon.store._pools import PoolFigure
from klingmon.store._schema import RUN_MS, counters, downloads, events, tasks

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from klingmon.store._base import UnitOfWork
    from klingmon.store._rows import Report

__all__ = ["BatchSummary", "Reports"]

_IN_SLOT = IN_FLIGHT
_FINISHED = (TaskStatus.SUCCEED.value, TaskStatus.FAILED.value)
_HOLDING = (
    TaskStatus.SUBMITTING.value,
    TaskStatus.SUBMITTED.value,
    TaskStatus.PROCESSING.value,
)


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """One batch's counts and figures, for the overview."""

    batch_id: int
    counts: dict[TaskStatus, int] = field(default_factory=dict)
    units: float = 0.0
    #: Tasks flagged stuck that have not finished since.
    stuck: int = 0
    first_submitted_ms: int | None = None
    last_finished_ms: int | None = None
    files: dict[str, int] = field(default_factory=dict)
    #: Balance deducted for the finished tasks, by currency (``""``: none named).
    cash: dict[str, float] = field(default_factory=dict)


class Reports:
    """Read-mostly figures, and the counters they are partly made of."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

    def report(self, batch_id: int | None = None) -> Report:
        """Figures for one batch, or for everything when ``batch_id`` is None."""
        counts = self.counters(batch_id)
        with self._unit.read() as conn:
            return _report.build(conn, batch_id, counts, self._unit.dialect)

    @staticmethod
    def _cash(conn: sa.Connection) -> dict[int, dict[str, float]]:
        """Every batch's succeeded tasks' cash, by currency."""
        c = tasks.c
        found: dict[int, dict[str, float]] = {}
        for batch_id, currency, total in conn.execute(
            sa.select(c.batch_id, c.currency, sa.func.sum(c.cash))
            .where(c.status == TaskStatus.SUCCEED.value, c.cash.is_not(None))
            .group_by(c.batch_id, c.currency)
        ):
            found.setdefault(batch_id, {})[str(currency or "")] = float(total)
        return found

    def batch_summaries(self) -> dict[int, BatchSummary]:
        """Every batch's counts by status, units, stuck flags and file states."""
        c, d = tasks.c, downloads.c
        found: dict[int, dict[str, Any]] = {}
        with self._unit.read() as conn:
            rows = conn.execute(
                sa.select(
                    c.batch_id,
                    c.status,
                    sa.func.count(),
                    sa.func.sum(c.units),
                    sa.func.sum(sa.case((c.stuck == sa.true(), 1), else_=0)),
                    sa.func.min(c.submitted_ms),
                    sa.func.max(c.finished_ms),
                ).group_by(c.batch_id, c.status)
            )
            for batch_id, status, n, units, stuck, first, last in rows:
                entry = found.setdefault(
                    batch_id,
                    {"counts": {}, "units": 0.0, "stuck": 0, "first": [], "last": []},
                )
                entry["counts"][TaskStatus(status)] = int(n)
                if status == TaskStatus.SUCCEED.value and units is not None:
                    entry["units"] += float(units)
                if TaskStatus(status) not in TERMINAL:  # stuck now, not once
                    entry["stuck"] += int(stuck or 0)
                if first is not None:
                    entry["first"].append(int(first))
                if last is not None and status in _FINISHED:
                    entry["last"].append(int(last))
            files: dict[int, dict[str, int]] = {}
            for batch_id, status, n in conn.execute(
                sa.select(d.batch_id, d.status, sa.func.count()).group_by(
                    d.batch_id, d.status
                )
            ):
                files.setdefault(batch_id, {})[str(status)] = int(n)
            cash = self._cash(conn)
        return {
            batch_id: BatchSummary(
                batch_id=batch_id,
                counts=entry["counts"],
                units=entry["units"],
                stuck=entry["stuck"],
                first_submitted_ms=min(entry["first"]) if entry["first"] else None,
                last_finished_ms=max(entry["last"]) if entry["last"] else None,
                files=files.get(batch_id, {}),
                cash=cash.get(batch_id, {}),
            )
            for batch_id, entry in found.items()
        }

    def change_mark(
        self, *, batch_id: int | None = None, task_id: int | None = None
    ) -> tuple[int, ...]:
        """A value that changes whenever what a page shows may have changed.

        The newest event id (every status change, flag and note is an event), the
        download rows' progress, and for the overview also the task count and the
        counters' sum (requests).
        """
        e, d = events.c, downloads.c
        where_e: list[Any] = []
        where_d: list[Any] = []
        if task_id is not None:
            where_e.append(e.task_id == task_id)
            where_d.append(d.task_id == task_id)
        elif batch_id is not None:
            where_e.append(e.batch_id == batch_id)
            where_d.append(d.batch_id == batch_id)
        with self._unit.read() as conn:
            last_event = conn.scalar(sa.select(sa.func.max(e.id)).where(*where_e))
            files = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.sum(d.attempts),
                    sa.func.sum(sa.case((d.status == "done", 1), else_=0)),
                    sa.func.sum(sa.case((d.status == "downloading", 1), else_=0)),
                    sa.func.max(d.done_ms),
                ).where(*where_d)
            ).one()
            mark = [int(last_event or 0), *(int(v or 0) for v in files)]
            if batch_id is None and task_id is None:
                mark.append(int(conn.scalar(sa.select(sa.func.max(tasks.c.id))) or 0))
                mark.append(
                    int(conn.scalar(sa.select(sa.func.sum(counters.c.value))) or 0)
                )
        return tuple(mark)

    def slots_in_use(self) -> int:
        """Tasks that hold one of the account's slots (submitting, at Kling)."""
        query = sa.select(sa.func.count()).where(tasks.c.status.in_(_IN_SLOT))
        with self._unit.read() as conn:
            return int(conn.scalar(query) or 0)

    def pool_figures(
        self, now_ms: int, alive_infos: Sequence[Mapping[str, Any]]
    ) -> list[PoolFigure]:
        """Every pool with slots held or tasks queued: its use, and the limit the
        live workers (their heartbeat ``info``: ``alive_infos``) hold for it."""
        queued_count = (
            sa.select(tasks.c.pool, sa.func.count())
            .where(tasks.c.status == TaskStatus.QUEUED.value)
            .group_by(tasks.c.pool)
        )
        with self._unit.read() as conn:
            held = _pools.held(conn, now_ms)
            queued = {str(p): int(n) for p, n in conn.execute(queued_count)}
        return [
            PoolFigure(
                pool,
                *held.get(pool, (0, 0)),
                queued=queued.get(pool, 0),
                limit=_pools.limit_of_workers(pool, alive_infos),
            )
            for pool in sorted(held.keys() | queued.keys())
        ]

    def slots_by_batch(self) -> dict[int, int]:
        """Tasks holding one of the account's slots, per batch id."""
        query = (
            sa.select(tasks.c.batch_id, sa.func.count())
            .where(tasks.c.status.in_(_HOLDING))
            .group_by(tasks.c.batch_id)
        )
        with self._unit.read() as conn:
            return {int(b): int(n) for b, n in conn.execute(query)}

    def processing_seconds(self, batch_id: int) -> list[float]:
        """How long each finished task of a batch spent at Kling after its queue."""
        query = sa.select(RUN_MS).where(tasks.c.batch_id == batch_id)
        with self._unit.read() as conn:
            return sorted(
                max(0.0, v / 1000) for v in conn.scalars(query) if v is not None
            )

    def counters(self, batch_id: int | None = None) -> dict[str, int]:
        query = sa.select(counters.c.name, counters.c.value).where(
            counters.c.batch_id == (batch_id or 0)
        )
        with self._unit.read() as conn:
            return {name: int(value) for name, value in conn.execute(query)}

    def counter_totals(self) -> dict[str, int]:
        """Every counter summed over all batches (for metrics)."""
        query = sa.select(counters.c.name, sa.func.sum(counters.c.value)).group_by(
            counters.c.name
        )
        with self._unit.read() as conn:
            return {name: int(value or 0) for name, value in conn.execute(query)}

    def bump(self, counts: Mapping[str, int], batch_id: int | None = None) -> None:
        """Add to named counters (``batch_id`` None = the global ones)."""
        rows = [
            {"name": k, "batch_id": batch_id or 0, "value": v}
            for k, v in sorted(counts.items())
            if v
        ]
        if not rows:
            return
        ins = self._unit.dialect.insert(counters)
        stmt = ins.on_conflict_do_update(
            index_elements=[counters.c.name, counters.c.batch_id],
            set_={"value": counters.c.value + ins.excluded.value},
        )
        with self._unit.write() as conn:
            conn.execute(stmt, rows)
