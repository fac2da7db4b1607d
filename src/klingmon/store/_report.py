"""A batch's figures, aggregated in SQL so that a million tasks take about a second.

Counts and sums come from one grouped query; only the two duration columns needed for
percentiles are fetched (PostgreSQL computes those itself with ``percentile_cont``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.api._models import TaskStatus
from klingmon.store._rows import Report
from klingmon.store._schema import downloads, events, tasks

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["REQUEST_KINDS", "REQUEST_PREFIX", "SOURCES", "build", "percentile"]

#: Counters that count API requests: the client's kinds, or any ``requests.<kind>``.
REQUEST_KINDS = frozenset({"create", "get", "list"})
REQUEST_PREFIX = "requests."
#: Where a status can be learned from (``events.source``, ``tasks.learned_via``).
SOURCES = ("submit", "poll", "sweep", "callback", "local")
_FINISHED = (TaskStatus.SUCCEED.value, TaskStatus.FAILED.value)
_FAILED = (TaskStatus.FAILED.value, TaskStatus.REJECTED.value)


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    n = len(sorted_values)
    if n == 0:
        return None
    pos = q * (n - 1)
    low = int(pos)
    high = min(low + 1, n - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (pos - low)


def _where(batch_id: int | None) -> list[sa.ColumnElement[bool]]:
    return [] if batch_id is None else [tasks.c.batch_id == batch_id]


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value) / 1000.0


def _durations(
    conn: sa.Connection, where: list[sa.ColumnElement[bool]]
) -> tuple[float | None, ...]:
    """Queue and processing p50/p95, from one scan of the tasks that were submitted.

    Processing runs from ``processing_ms`` (or ``submitted_ms`` when processing was
    never seen) to ``finished_ms``, for tasks that ended at Kling.
    """
    c = tasks.c
    queue = c.submitted_ms - c.created_ms
    started = sa.func.coalesce(c.processing_ms, c.submitted_ms)
    done = sa.and_(c.status.in_(_FINISHED), c.finished_ms.is_not(None))
    processing = sa.case((done, c.finished_ms - started))
    where = [*where, c.submitted_ms.is_not(None)]
    if conn.dialect.name == "postgresql":
        cont = sa.func.percentile_cont
        row = conn.execute(
            sa.select(
                cont(0.5).within_group(queue),
                cont(0.95).within_group(queue),
                cont(0.5).within_group(processing),
                cont(0.95).within_group(processing),
            ).where(*where)
        ).one()
        return tuple(_seconds(v) for v in row)
    rows = _raw_rows(conn, sa.select(queue, processing).where(*where))
    queued = sorted(r[0] for r in rows)
    ran = sorted(r[1] for r in rows if r[1] is not None)
    return tuple(
        _seconds(percentile(values, q)) for values in (queued, ran) for q in (0.5, 0.95)
    )


def _raw_rows(conn: sa.Connection, query: sa.Select[Any]) -> list[tuple[Any, ...]]:
    """Rows straight from the driver: a million in a fraction of a second.

    SQLAlchemy's result processing costs about a microsecond a row. The values bound
    here are our own integers and status constants, so rendering them inline is safe.
    """
    compiled = query.compile(
        dialect=conn.dialect, compile_kwargs={"literal_binds": True}
    )
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(str(compiled))
        rows: list[tuple[Any, ...]] = cursor.fetchall()
    finally:
        cursor.close()
    return rows


def _downloads(
    conn: sa.Connection, batch_id: int | None
) -> tuple[dict[str, int], int | None]:
    """Result files by status, and the first deletion among those not yet done."""
    d = downloads.c
    where = [] if batch_id is None else [d.batch_id == batch_id]
    files = {
        str(s): int(n)
        for s, n in conn.execute(
            sa.select(d.status, sa.func.count()).where(*where).group_by(d.status)
        )
    }
    first = conn.scalar(
        sa.select(sa.func.min(d.expires_ms)).where(*where, d.status != "done")
    )
    return files, None if first is None else int(first)


def build(conn: sa.Connection, batch_id: int | None, counts: dict[str, int]) -> Report:
    where = _where(batch_id)
    c = tasks.c
    is_true = sa.true()
    # One scan, grouped by status alone (the index's order); sources are a closed set.
    grouped = conn.execute(
        sa.select(
            c.status,
            sa.func.count(),
            sa.func.sum(sa.case((c.stuck == is_true, 1), else_=0)),
            sa.func.sum(sa.case((c.watch_timeout == is_true, 1), else_=0)),
            sa.func.sum(c.units),
            *(sa.func.sum(sa.case((c.learned_via == s, 1), else_=0)) for s in SOURCES),
        )
        .where(*where)
        .group_by(c.status)
    ).all()
    by_status: dict[TaskStatus, int] = {}
    learned: dict[str, int] = {}
    stuck = timed_out = 0
    units = 0.0
    for status, n, n_stuck, n_timeout, unit_sum, *via in grouped:
        key = TaskStatus(status)
        by_status[key] = n
        for source, count in zip(SOURCES, via, strict=True):
            if count:
                learned[source] = learned.get(source, 0) + int(count)
        stuck += int(n_stuck or 0)
        timed_out += int(n_timeout or 0)
        if key is TaskStatus.SUCCEED and unit_sum is not None:
            units += float(unit_sum)
    failures = {
        (msg or "(no reason given)"): n
        for msg, n in conn.execute(
            sa.select(c.status_msg, sa.func.count())
            .where(*where, c.status.in_(_FAILED))
            .group_by(c.status_msg)
            .order_by(sa.func.count().desc())
        )
    }
    statuses_via = _statuses_via(conn, batch_id)
    q50, q95, p50, p95 = _durations(conn, where)
    total = sum(by_status.values())
    requests: dict[str, int] = {}
    for name, value in counts.items():
        kind = name.removeprefix(REQUEST_PREFIX)
        if kind in REQUEST_KINDS or name.startswith(REQUEST_PREFIX):
            requests[kind] = requests.get(kind, 0) + value
    files, first_owed = _downloads(conn, batch_id)
    return Report(
        downloads=files,
        first_owed_expiry_ms=first_owed,
        batch_id=batch_id,
        total=total,
        by_status=by_status,
        queue_p50_s=q50,
        queue_p95_s=q95,
        processing_p50_s=p50,
        processing_p95_s=p95,
        failures=failures,
        units=units,
        stuck=stuck,
        watch_timeout=timed_out,
        learned_via=learned,
        requests=requests,
        counters=dict(counts),
        requests_per_task=(sum(requests.values()) / total) if total else None,
        statuses_via=statuses_via,
    )


def _statuses_via(conn: sa.Connection, batch_id: int | None) -> dict[str, int]:
    """Status changes (and callback hints) by source: the callback/poll split."""
    e = events.c
    query = (
        sa.select(e.source, e.kind, sa.func.count())
        .where(e.kind.in_(["status", "hint"]))
        .group_by(e.source, e.kind)
    )
    if batch_id is not None:
        query = query.where(e.batch_id == batch_id)
    found: dict[str, int] = {}
    for source, kind, n in conn.execute(query):
        key = f"{source}_hint" if kind == "hint" else str(source)
        found[key] = found.get(key, 0) + int(n)
    return found
