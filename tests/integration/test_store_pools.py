"""Concurrency pools in the submitter's claim, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from test_store_contract import T0, Backend, backend, store, wire

from klingmon.store import NewTask
from klingmon.store._pools import PoolUse

if TYPE_CHECKING:
    from klingmon.store import Store, TaskRow

__all__ = ["backend", "store"]  # the contract suite's fixtures, used here

MINUTE = 60_000
V3 = "/text-to-video/kling-3.0"
V26 = "/text-to-video/kling-2.6"
IMG = "/image-generation/kling-3.0"
SIZES = {"kling-3.0/video": 5, "kling-2.6/video": 5, "kling-3.0/image": 10}


def tasks_of(endpoint: str, count: int, **body: Any) -> list[NewTask]:
    return [
        NewTask(endpoint, {"prompt": f"{endpoint} {i}", **body}) for i in range(count)
    ]


def mixed() -> list[NewTask]:
    """Interleaved: 3.0 video, 2.6 video and images of n = 4."""
    out: list[NewTask] = []
    for group in zip(
        tasks_of(V3, 12), tasks_of(V26, 12), tasks_of(IMG, 12, n=4), strict=True
    ):
        out += group
    return out


def claim(store: Store, now: int, **kw: Any) -> list[TaskRow]:
    kw.setdefault("slots", 20)
    kw.setdefault("pools", SIZES)
    return store.tasks.claim_submissions("w", now, MINUTE, **kw)


def slots_per_pool(rows: list[TaskRow]) -> Counter[str]:
    held: Counter[str] = Counter()
    for row in rows:
        held[row.pool] += row.slots
    return held


def finish(store: Store, rows: list[TaskRow], now: int) -> None:
    for row in rows:
        store.tasks.mark_submitting(row.id, now)
        store.tasks.mark_submitted(row.id, wire(f"k{row.id}", "succeed", now), now, now)


def test_each_task_is_stored_with_its_pool_and_slots(store: Store):
    batch = store.tasks.create_batch(
        None,
        [
            NewTask(V3, {}),
            NewTask(IMG, {"n": 4}),
            NewTask(IMG, {"settings": {"n": 3}}),
            NewTask("/v1/videos/text2video", {}),
            NewTask("/v1/images/generations", {"model_name": "kling-v2", "n": 2}),
            NewTask("/text-to-video/kling-9.9-future", {}),
        ],
        T0,
    )
    found = [(r.pool, r.slots) for r in store.tasks.tasks(batch.id)]
    assert found == [
        ("kling-3.0/video", 1),
        ("kling-3.0/image", 4),
        ("kling-3.0/image", 3),
        ("kling-v1/video", 1),
        ("kling-v2/image", 2),
        ("kling-9.9-future/video", 1),
    ]


def test_a_claim_fills_every_pool_to_its_size_in_slots(store: Store):
    """5 + 5 video tasks and two images of 4 (8 of 10 slots): side by side."""
    store.tasks.create_batch(None, mixed(), T0)
    rows = claim(store, T0)
    assert slots_per_pool(rows) == {
        "kling-3.0/video": 5,
        "kling-2.6/video": 5,
        "kling-3.0/image": 8,
    }
    assert claim(store, T0 + 1) == []  # every pool is full (the leases hold)
    use = {u.pool: u for u in store.tasks.pool_use(T0 + 1)}
    assert use["kling-3.0/image"] == PoolUse("kling-3.0/image", 8, 2, need=4)
    # The images end: only their pool has room again.
    finish(store, [r for r in rows if r.pool == "kling-3.0/image"], T0 + 2)
    again = claim(store, T0 + 3)
    assert slots_per_pool(again) == {"kling-3.0/image": 8}


def test_a_pool_not_named_takes_the_default_size(store: Store):
    store.tasks.create_batch(None, tasks_of("/text-to-video/kling-9.9", 10), T0)
    assert len(claim(store, T0, slots=3)) == 3


def test_the_single_number_counts_every_task_as_one_slot(store: Store):
    """``pooled`` False: the behaviour before pools, one number for the account."""
    store.tasks.create_batch(None, mixed(), T0)
    rows = claim(store, T0, slots=20, pools=None, pooled=False)
    assert len(rows) == 20
    assert sum(r.slots for r in rows) > 20  # what Kling counts: over-sent


def test_a_task_bigger_than_its_pool_still_goes_when_the_pool_is_empty(store: Store):
    """Never refuse what Kling might accept: n = 9 in a pool of 4 goes alone."""
    store.tasks.create_batch(None, tasks_of(IMG, 2, n=9), T0)
    rows = claim(store, T0, pools={"kling-3.0/image": 4})
    assert [r.slots for r in rows] == [9]
    assert claim(store, T0 + 1, pools={"kling-3.0/image": 4}) == []


def test_a_big_task_is_not_passed_over_by_smaller_ones(store: Store):
    """FIFO within a pool: an n = 4 that does not fit holds back the n = 1 behind."""
    store.tasks.create_batch(
        None,
        [*tasks_of(IMG, 1, n=4), *tasks_of(IMG, 1, n=4), *tasks_of(IMG, 3, n=1)],
        T0,
    )
    rows = claim(store, T0, pools={"kling-3.0/image": 6})
    assert [r.slots for r in rows] == [4]


def test_priorities_hold_within_each_pool(store: Store):
    low = store.tasks.create_batch("low", tasks_of(V3, 3) + tasks_of(V26, 3), T0)
    high = store.tasks.create_batch("high", tasks_of(V3, 3), T0 + 1, priority=5)
    rows = claim(store, T0 + 10, pools={"kling-3.0/video": 2, "kling-2.6/video": 2})
    by_pool: dict[str, set[int]] = {}
    for r in rows:
        by_pool.setdefault(r.pool, set()).add(r.batch_id)
    assert by_pool == {"kling-3.0/video": {high.id}, "kling-2.6/video": {low.id}}


def test_migration_gives_open_rows_their_pool(backend: Backend, store: Store):
    """An upgrade from 0009: open rows get their real pool, ended ones ``legacy``."""
    store.tasks.create_batch(None, [NewTask(IMG, {"n": 4}), NewTask(V3, {})], T0)
    done = store.tasks.create_batch(None, [NewTask(V26, {})], T0)
    finish(store, store.tasks.tasks(done.id), T0)
    engine = store._engine
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE tasks SET pool = 'legacy', slots = 1"))
        conn.execute(sa.text("ALTER TABLE batches DROP COLUMN accounts"))  # 0011
        conn.execute(sa.text("ALTER TABLE tasks DROP COLUMN account"))
        conn.execute(sa.text("DROP INDEX ix_tasks_status_pool"))
        conn.execute(sa.text("ALTER TABLE tasks DROP COLUMN slots"))
        conn.execute(sa.text("ALTER TABLE tasks DROP COLUMN pool"))
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0009'"))
    store.close()
    with backend.open() as again:
        found = sorted((r.pool, r.slots) for r in again.tasks.tasks())
    assert found == [("kling-3.0/image", 4), ("kling-3.0/video", 1), ("legacy", 1)]


def test_concurrent_workers_never_overfill_a_pool(backend: Backend, store: Store):
    """Eight workers claiming at once: no pool over its size, each task once."""
    store.tasks.create_batch(None, mixed(), T0)
    workers = 8
    start = threading.Barrier(workers)
    stores = [backend.open() for _ in range(workers)]
    got: dict[int, list[TaskRow]] = {}

    def run(n: int) -> None:
        start.wait(timeout=10)
        got[n] = stores[n].tasks.claim_submissions(
            f"w{n}", T0, MINUTE, slots=20, pools=SIZES
        )

    threads = [threading.Thread(target=run, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for s in stores:
        s.close()
    claimed = [r for rows in got.values() for r in rows]
    assert len(got) == workers
    assert len({r.id for r in claimed}) == len(claimed)
    assert slots_per_pool(claimed) == {
        "kling-3.0/video": 5,
        "kling-2.6/video": 5,
        "kling-3.0/image": 8,
    }
