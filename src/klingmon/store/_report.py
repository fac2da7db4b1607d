"""A batch's figures, aggregated in SQL: a million tasks take about half a second.

Counts and sums come from one grouped query over an index that covers them. Duration
percentiles come from PostgreSQL's ``percentile_cont``; SQLite has none, so it walks
an expression index that holds each duration in order (``LIMIT 2 OFFSET k`` reads the
two values around a rank), or, for a few thousand tasks, sorts them in Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import FAILURES, Source, TaskStatus
from klingmon.store._rows import AccountFigures, Report
from klingmon.store._schema import (
    DURATION_INDEXES,
    QUEUE_MS,
    RUN_MS,
    downloads,
    events,
    tasks,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.store._dialect import Dialect

#: The account of a task not sent yet, of a batch of several accounts.
UNPLACED = "unplaced"

__all__ = [
    "REQUEST_KINDS",
    "REQUEST_PREFIX",
    "SOURCES",
    "build",
    "durations",
    "percentile",
    "percentiles_in_sql",
    "walk_pays",
]

#: Counters that count API requests: the client's kinds, or any ``requests.<kind>``.
REQUEST_KINDS = frozenset({"create", "get", "list"})
REQUEST_PREFIX = "requests."
#: Where a status can be learned from (``events.source``, ``tasks.learned_via``).
SOURCES = tuple(Source)
_FAILED = FAILURES
_QUANTILES = (0.5, 0.95)
_DURATIONS = (QUEUE_MS, RUN_MS)
#: Up to this many tasks, SQLite sorts durations in Python: a few milliseconds, where
#: an index walk reads the whole index whatever the batch's size.
FETCH_AT_MOST = 20_000


def _rank(n: int, q: float) -> tuple[int, int, float]:
    """The ranks on either side of quantile ``q`` of ``n`` values, and the weight."""
    pos = q * (n - 1)
    low = int(pos)
    return low, min(low + 1, n - 1), pos - low


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's percentile_cont)."""
    n = len(sorted_values)
    if n == 0:
        return None
    low, high, frac = _rank(n, q)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * frac


def _seconds(value: Any) -> float | None:
    return None if value is None else float(value) / 1000.0


def walk_pays(conn: sa.Connection, batch_id: int | None, total: int) -> bool:
    """Whether walking the duration indexes beats sorting the durations in Python.

    A walk reads about half of each index, whatever the batch's size: some 90 ns a
    task in the store. Fetching and sorting costs about a microsecond a task in scope.
    """
    if total <= FETCH_AT_MOST:
        return False
    if batch_id is None:
        return True
    size = conn.scalar(sa.select(sa.func.max(tasks.c.id))) or 0
    return 10 * total > size


def percentiles_in_sql(
    conn: sa.Connection, batch_id: int | None
) -> tuple[float | None, ...]:
    """Queue and run p50/p95 in seconds by ``percentile_cont`` (PostgreSQL)."""
    where = [] if batch_id is None else [tasks.c.batch_id == batch_id]
    cont = sa.func.percentile_cont
    figures = (cont(q).within_group(d) for d in _DURATIONS for q in _QUANTILES)
    row = conn.execute(
        sa.select(*figures).where(*where, tasks.c.submitted_ms.is_not(None))
    ).one()
    return tuple(_seconds(v) for v in row)


def durations(
    conn: sa.Connection, batch_id: int | None, total: int, *, walk: bool
) -> tuple[float | None, ...]:
    """Queue and run p50/p95 in seconds (see ``QUEUE_MS`` and ``RUN_MS``), on SQLite.

    ``total`` counts the tasks in scope. ``walk`` picks the index walk over
    fetching and sorting (:func:`walk_pays`): both give the same figures.
    """
    where = [] if batch_id is None else [tasks.c.batch_id == batch_id]
    if walk:
        return tuple(
            _seconds(v)
            for name, duration in DURATION_INDEXES.items()
            for v in _walk(conn, name, duration, batch_id, total)
        )
    query = sa.select(*_DURATIONS).where(*where, tasks.c.submitted_ms.is_not(None))
    rows = _raw_rows(conn, _sql(conn, query))
    queued = sorted(r[0] for r in rows)
    ran = sorted(r[1] for r in rows if r[1] is not None)
    return tuple(_seconds(percentile(v, q)) for v in (queued, ran) for q in _QUANTILES)


def _walk(
    conn: sa.Connection,
    index: str,
    duration: sa.ColumnElement[Any],
    batch_id: int | None,
    total: int,
) -> list[float | None]:
    """p50 and p95 of one duration, read off its expression index.

    Every task has an entry, the unknown ones (NULL) first: their count is one index
    search, and the rest are the ``n`` values. Each rank is reached from the nearer
    end, so p95 reads 5% of the index. ``INDEXED BY`` because without statistics
    SQLite prefers the batch index and a sort; the expression must render exactly as
    the index's does, or SQLite sorts instead.
    """
    # SQLAlchemy cannot render INDEXED BY; every piece is our own SQL or an integer.
    expr = _sql(conn, duration)
    scope = "" if batch_id is None else f" AND batch_id = {int(batch_id)}"
    head = f"FROM tasks INDEXED BY {index} WHERE ({expr})"
    [(nulls,)] = _raw_rows(conn, f"SELECT count(*) {head} IS NULL{scope}")
    n = total - nulls
    found: list[float | None] = []
    for q in _QUANTILES:
        if n == 0:
            found.append(None)
            continue
        low, high, frac = _rank(n, q)
        # Descending, the value at rank ``high`` is the (n - 1 - high)-th.
        order, skip = ("", low) if low <= n - 1 - high else (" DESC", n - 1 - high)
        page = f"ORDER BY {expr}{order} LIMIT {high - low + 1} OFFSET {skip}"
        sql = f"SELECT {expr} {head} IS NOT NULL{scope} {page}"
        values = sorted(v for (v,) in _raw_rows(conn, sql))
        found.append(values[0] + (values[-1] - values[0]) * frac)
    return found


def _sql(conn: sa.Connection, element: sa.ClauseElement) -> str:
    """SQL with values inline: an expression index only matches literal values.

    Safe here: the values are our own integers and status constants.
    """
    return str(
        element.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
    )


def _raw_rows(conn: sa.Connection, sql: str) -> list[tuple[Any, ...]]:
    """Rows straight from the driver: a million in a fraction of a second.

    SQLAlchemy's result processing costs about a microsecond a row.
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
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


def build(
    conn: sa.Connection,
    batch_id: int | None,
    counts: dict[str, int],
    dialect: Dialect,
) -> Report:
    """The figures of one batch (or all), ``counts`` its counters."""
    c = tasks.c
    where = [] if batch_id is None else [c.batch_id == batch_id]
    # Grouped in ``ix_tasks_batch_report``'s order, which covers every column read.
    keys = (c.batch_id, c.status, c.learned_via, c.stuck, c.watch_timeout)
    grouped = conn.execute(
        sa.select(*keys[1:], sa.func.count(), sa.func.sum(c.units))
        .where(*where)
        .group_by(*keys)
    ).all()
    by_status: dict[TaskStatus, int] = {}
    learned: dict[str, int] = {}
    stuck = timed_out = 0
    units = 0.0
    # Statuses in order, then sources in SOURCES order: the order figures always had.
    rank = {source: i for i, source in enumerate(SOURCES)}
    ordered = sorted(grouped, key=lambda row: (row[0], rank.get(row[1], len(SOURCES))))
    for status, via, is_stuck, timed, n, unit_sum in ordered:
        key = TaskStatus(status)
        by_status[key] = by_status.get(key, 0) + n
        if via in SOURCES:
            learned[via] = learned.get(via, 0) + n
        stuck += n if is_stuck else 0
        timed_out += n if timed else 0
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
    total = sum(by_status.values())
    q50, q95, p50, p95 = dialect.percentiles(conn, batch_id, total)
    requests: dict[str, int] = {}
    for name, value in counts.items():
        kind = name.removeprefix(REQUEST_PREFIX)
        if kind in REQUEST_KINDS or name.startswith(REQUEST_PREFIX):
            requests[kind] = requests.get(kind, 0) + value
    files, first_owed = _downloads(conn, batch_id)
    return Report(
        accounts=_accounts(conn, where),
        cash=cash_by_currency(conn, where),
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


def _accounts(
    conn: sa.Connection, where: list[sa.ColumnElement[bool]]
) -> dict[str, AccountFigures]:
    """Tasks, successes and units charged per account (``unplaced``: not sent)."""
    c = tasks.c
    succeeded = c.status == TaskStatus.SUCCEED.value
    rows = conn.execute(
        sa.select(
            c.account,
            sa.func.count(),
            sa.func.sum(sa.case((succeeded, 1), else_=0)),
            sa.func.sum(sa.case((succeeded, c.units), else_=None)),
        )
        .where(*where)
        .group_by(c.account)
    )
    return {
        str(account or UNPLACED): AccountFigures(int(n), int(ok or 0), float(u or 0))
        for account, n, ok, u in sorted(rows, key=lambda r: str(r[0] or "~"))
    }


def cash_by_currency(
    conn: sa.Connection, where: list[sa.ColumnElement[bool]]
) -> dict[str, float]:
    """The finished tasks' cash, summed per currency (as the units, succeeded only)."""
    c = tasks.c
    rows = conn.execute(
        sa.select(c.currency, sa.func.sum(c.cash))
        .where(*where, c.status == TaskStatus.SUCCEED.value, c.cash.is_not(None))
        .group_by(c.currency)
    )
    return {str(currency or ""): float(total) for currency, total in rows}


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
