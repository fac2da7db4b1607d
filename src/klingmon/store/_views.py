"""Cheap read queries for the dashboard: change marks, per-batch summaries, timings.

The dashboard polls :meth:`Views.change_mark` several times a second per open page,
so it is a handful of ``max``/``count`` lookups on indexed columns. Summaries are
grouped in SQL: one scan of ``tasks`` for every batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from klingmon.domain import IN_FLIGHT, TERMINAL, TaskStatus
from klingmon.store._base import StoreBase
from klingmon.store._downloads import DownloadRow
from klingmon.store._schema import RUN_MS, counters, downloads, events, outbox, tasks

__all__ = ["BatchSummary", "Views"]

_IN_SLOT = IN_FLIGHT
_FINISHED = (TaskStatus.SUCCEED.value, TaskStatus.FAILED.value)


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


class Views(StoreBase):
    """Read helpers for the web dashboard (mixed into :class:`Store`)."""

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
        with self._read() as conn:
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

    def batch_summaries(self) -> dict[int, BatchSummary]:
        """Every batch's counts by status, units, stuck flags and file states."""
        c, d = tasks.c, downloads.c
        found: dict[int, dict[str, Any]] = {}
        with self._read() as conn:
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
        return {
            batch_id: BatchSummary(
                batch_id=batch_id,
                counts=entry["counts"],
                units=entry["units"],
                stuck=entry["stuck"],
                first_submitted_ms=min(entry["first"]) if entry["first"] else None,
                last_finished_ms=max(entry["last"]) if entry["last"] else None,
                files=files.get(batch_id, {}),
            )
            for batch_id, entry in found.items()
        }

    def slots_in_use(self) -> int:
        """Tasks that hold one of the account's slots (submitting, at Kling)."""
        query = sa.select(sa.func.count()).where(tasks.c.status.in_(_IN_SLOT))
        with self._read() as conn:
            return int(conn.scalar(query) or 0)

    def live_lease_owners(self, now_ms: int) -> set[str]:
        """Owners whose leases have not run out: workers that are busy now."""
        found: set[str] = set()
        with self._read() as conn:
            for table in (tasks, outbox, downloads):
                query = sa.select(table.c.lease_owner).where(
                    table.c.lease_owner.is_not(None), table.c.lease_until_ms > now_ms
                )
                found.update(conn.execute(query.distinct()).scalars())
        return found

    def processing_seconds(self, batch_id: int) -> list[float]:
        """How long each finished task of a batch spent at Kling after its queue."""
        query = sa.select(RUN_MS).where(tasks.c.batch_id == batch_id)
        with self._read() as conn:
            return sorted(
                max(0.0, v / 1000) for v in conn.scalars(query) if v is not None
            )

    def download_row(self, download_id: int) -> DownloadRow | None:
        """One ``downloads`` row by id."""
        query = sa.select(downloads).where(downloads.c.id == download_id)
        with self._read() as conn:
            m = conn.execute(query).mappings().first()
        if m is None:
            return None
        return DownloadRow(**{col.name: m[col.name] for col in downloads.c})
