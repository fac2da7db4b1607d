"""The report's figures on SQLite and PostgreSQL, and the indexes behind them."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

import pytest
import sqlalchemy as sa
from alembic import command
from test_store_contract import EP, T0, Backend, backend, new, store, wire

from klingmon.domain import TaskStatus
from klingmon.store import Observation, Store
from klingmon.store._database import (
    WRITE,
    _alembic_config,
    create_store_engine,
    resolve_url,
    revisions,
)
from klingmon.store._report import durations as _durations
from klingmon.store._report import percentile
from klingmon.store._schema import DURATION_INDEXES, batches, tasks

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from klingmon.store import TaskRow

__all__ = ["backend", "store"]  # fixtures shared with the store contract

_FINISHED = (TaskStatus.SUCCEED, TaskStatus.FAILED)
_EXPRESSION_INDEX_WARNING = (
    "ignore:Skipped unsupported reflection of expression-based index"
    ":sqlalchemy.exc.SAWarning"
)


def _fill(store: Store, name: str, n: int, seed: int) -> int:
    """A batch whose tasks stop at every stage, with scattered queue and run times."""
    rng = random.Random(seed)
    batch = store.tasks.create_batch(name, new(n), T0)
    for row in store.tasks.tasks(batch.id):
        fate = rng.random()
        if fate < 0.1:
            continue  # still queued
        store.tasks.mark_submitting(row.id, T0)
        at = T0 + rng.randint(0, 5_000)
        store.tasks.mark_submitted(row.id, wire(f"k{row.id}", "submitted", at), at, at)
        if rng.random() < 0.6:
            at += rng.randint(1, 9_000)
            seen = Observation(row.id, wire(f"k{row.id}", "processing", at), "poll", at)
            store.watch.apply([seen], at)
        if fate < 0.25:
            continue  # still at Kling
        at += rng.randint(1, 60_000)
        end = "failed" if fate < 0.35 else "succeed"
        done = Observation(row.id, wire(f"k{row.id}", end, at), "callback", at)
        store.watch.apply([done], at)
    return batch.id


def _expected(rows: list[TaskRow]) -> tuple[float | None, ...]:
    """The four figures straight from their definition, over the tasks' own rows."""
    queued = sorted(
        r.submitted_ms - r.created_ms for r in rows if r.submitted_ms is not None
    )
    ran = sorted(
        r.finished_ms - (r.processing_ms or r.submitted_ms)
        for r in rows
        if r.submitted_ms is not None
        and r.finished_ms is not None
        and r.status in _FINISHED
    )
    return tuple(
        None if (p := percentile(values, q)) is None else p / 1000
        for values in (queued, ran)
        for q in (0.5, 0.95)
    )


def _figures(store: Store, batch_id: int | None) -> tuple[float | None, ...]:
    rep = store.reports.report(batch_id)
    return (
        rep.queue_p50_s,
        rep.queue_p95_s,
        rep.processing_p50_s,
        rep.processing_p95_s,
    )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(str(tmp_path / "report.db")) as s:
        yield s


def test_percentiles_follow_their_definition(store: Store):
    """Queue and run p50/p95 are percentile_cont over the rows, per batch and in all."""
    a = _fill(store, "a", 40, seed=1)
    b = _fill(store, "b", 25, seed=2)
    idle = store.tasks.create_batch("idle", new(3), T0).id
    rows = {batch_id: store.tasks.tasks(batch_id) for batch_id in (a, b, idle)}
    for batch_id in (a, b, idle):
        assert _figures(store, batch_id) == pytest.approx(_expected(rows[batch_id]))
    assert _figures(store, idle) == (None, None, None, None)
    everything = [r for batch_rows in rows.values() for r in batch_rows]
    assert _figures(store, None) == pytest.approx(_expected(everything))


def test_the_dashboard_histogram_reads_the_run_times_the_report_does(store: Store):
    """processing_seconds: every finished task's run time, by the same definition."""
    a = _fill(store, "a", 40, seed=3)
    rows = store.tasks.tasks(a)
    expected = sorted(
        (r.finished_ms - (r.processing_ms or r.submitted_ms)) / 1000
        for r in rows
        if r.submitted_ms is not None
        and r.finished_ms is not None
        and r.status in _FINISHED
    )
    assert expected
    assert store.reports.processing_seconds(a) == pytest.approx(expected)


def test_counts_add_up_across_batches(store: Store):
    """The whole store's counts are its batches' counts summed, in status order."""
    a = _fill(store, "a", 30, seed=3)
    b = _fill(store, "b", 30, seed=4)
    store.watch.flag(store.tasks.tasks(b)[0].id, "stuck", T0, {})
    per_batch = [store.reports.report(a), store.reports.report(b)]
    whole = store.reports.report()
    assert whole.total == 60
    summed: dict[TaskStatus, int] = {}
    learned: dict[str, int] = {}
    for rep in per_batch:
        for status, n in rep.by_status.items():
            summed[status] = summed.get(status, 0) + n
        for source, n in rep.learned_via.items():
            learned[source] = learned.get(source, 0) + n
    assert whole.by_status == summed
    assert list(whole.by_status) == sorted(summed)
    assert whole.learned_via == learned
    assert (whole.stuck, whole.watch_timeout) == (1, 0)


def _both_ways(store: Store, batch_id: int | None) -> tuple[tuple[Any, ...], ...]:
    """The four figures by walking the indexes, and by sorting in Python."""
    total = store.reports.report(batch_id).total
    with store._engine.connect() as conn:
        return tuple(
            _durations(conn, batch_id, total, walk=walk) for walk in (True, False)
        )


def test_sqlite_index_walk_gives_the_figures_sorting_gives(sqlite_store: Store):
    """Walking the duration indexes and sorting in Python agree to the last bit."""
    sizes = (1, 2, 3, 7, 60)
    ids = [_fill(sqlite_store, f"b{n}", n, seed=n) for n in sizes]
    idle = sqlite_store.tasks.create_batch("idle", new(2), T0).id
    for batch_id in (None, *ids, idle):
        walked, by_sorting = _both_ways(sqlite_store, batch_id)
        assert walked == by_sorting, batch_id
    assert walked == (None, None, None, None)


def test_sqlite_index_walk_reads_its_indexes_and_never_sorts(sqlite_store: Store):
    """Each walk query names an expression index and SQLite plans it without a sort."""
    a = _fill(sqlite_store, "a", 20, seed=7)
    for batch_id in (None, a):
        total = sqlite_store.reports.report(batch_id).total
        statements: list[str] = []
        with sqlite_store._engine.connect() as conn:
            driver = conn.connection.driver_connection
            driver.set_trace_callback(statements.append)  # type: ignore[union-attr]
            try:
                _durations(conn, batch_id, total, walk=True)
            finally:
                driver.set_trace_callback(None)  # type: ignore[union-attr]
            selects = [s for s in statements if s.startswith("SELECT")]
            assert len(selects) == 6  # unknowns, then two pages, for each duration
            assert " DESC " in selects[2]  # p95 from the top end
            assert " DESC " in selects[5]
            for sql in selects:
                plan = " | ".join(
                    row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
                )
                assert "TEMP B-TREE" not in plan, (sql, plan)
                assert any(f"INDEX {name}" in plan for name in DURATION_INDEXES), plan


def _tasks_at_0003(backend: Backend) -> None:
    """A database migrated to 0003 only, holding a batch as 0003 wrote it."""
    engine = create_store_engine(resolve_url(backend.url))
    cfg = _alembic_config()
    rows = [
        {
            "batch_id": 1,
            "seq": i,
            "endpoint": EP,
            "body": {"prompt": f"p{i}"},
            "external_task_id": f"km-old-{i}",
            "status": "succeed" if i % 4 else "failed",
            "created_ms": T0,
            "submitted_ms": T0 + 100 * i,
            "processing_ms": None if i % 3 else T0 + 150 * i,
            "finished_ms": T0 + 1_000 * i + 7,
            "phase_ms": T0,
            "learned_via": "poll",
        }
        for i in range(1, 30)
    ]
    try:
        with engine.connect().execution_options(**{WRITE: True}) as conn:
            with conn.begin():
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "0003")
            with conn.begin():
                conn.execute(
                    batches.insert(), {"name": "old", "created_ms": T0, "defaults": {}}
                )
                conn.execute(tasks.insert(), rows)
    finally:
        engine.dispose()


def _index_names(store: Store) -> set[str]:
    with store._engine.connect() as conn:
        return {str(ix["name"]) for ix in sa.inspect(conn).get_indexes("tasks")}


@pytest.mark.filterwarnings(_EXPRESSION_INDEX_WARNING)
def test_upgrading_from_0003_indexes_the_tasks_already_there(backend: Backend):
    """Migrations 0004 and 0005 keep every task, index them, and downgrade cleanly."""
    _tasks_at_0003(backend)
    with backend.open() as store:
        assert revisions(store._engine) == ("0011", "0011")
        rows = store.tasks.tasks(1)
        assert len(rows) == 29
        assert _figures(store, 1) == pytest.approx(_expected(rows))
        assert store.reports.report(1).by_status == {
            TaskStatus.FAILED: 7,
            TaskStatus.SUCCEED: 22,
        }
        names = _index_names(store)
        assert {
            "ix_tasks_batch_report",
            "ix_tasks_status_id",
            "ix_tasks_leased",
        } <= names
        assert "ix_tasks_batch_status" not in names
        if store._engine.dialect.name == "sqlite":
            walked, by_sorting = _both_ways(store, 1)
            assert walked == by_sorting
        cfg = _alembic_config()
        writer = store._engine.connect().execution_options(**{WRITE: True})
        with writer as conn, conn.begin():
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "0003")
        names = _index_names(store)
        assert "ix_tasks_batch_status" in names
        assert not names & {"ix_tasks_batch_report", "ix_tasks_status_id"}
    with backend.open() as store:
        assert revisions(store._engine) == ("0011", "0011")
        assert _figures(store, 1) == pytest.approx(_expected(rows))
