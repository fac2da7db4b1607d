"""Batch priorities in the submitter's claim, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest
from test_store_contract import T0, Backend, backend, new, store, wire

from klingmon.errors import StoreError

if TYPE_CHECKING:
    from klingmon.store import BatchRow, Store, TaskRow

__all__ = ["backend", "store"]  # the contract suite's fixtures, used here

MINUTE = 60_000
AGING = 10 * MINUTE


def claim(store: Store, now: int, slots: int = 1) -> list[TaskRow]:
    return store.tasks.claim_submissions("w", now, MINUTE, slots=slots, aging_ms=AGING)


def ids(rows: list[TaskRow]) -> list[int]:
    return sorted(r.id for r in rows)


def ids_of(store: Store, batch: BatchRow) -> list[int]:
    return store.tasks.task_ids_of_batch(batch.id)


def finish(store: Store, rows: list[TaskRow], now: int) -> None:
    """Take the claimed tasks to Kling and to their end: their slots are free."""
    for row in rows:
        store.tasks.mark_submitting(row.id, now)
        store.tasks.mark_submitted(row.id, wire(f"k{row.id}", "succeed", now), now, now)


def test_the_highest_priority_goes_first_fifo_within_one(store: Store):
    """A later, higher batch goes before an older, lower one; equal ones by id."""
    low = store.tasks.create_batch("low", new(3), T0)
    high_a = store.tasks.create_batch("high-a", new(2), T0 + 1, priority=5)
    high_b = store.tasks.create_batch("high-b", new(2), T0 + 2, priority=5)
    rows = claim(store, T0 + 10, slots=3)
    assert ids(rows) == ids_of(store, high_a) + ids_of(store, high_b)[:1]
    finish(store, rows, T0 + 10)
    rows = claim(store, T0 + 20, slots=2)
    assert ids(rows) == sorted(ids_of(store, high_b)[1:] + ids_of(store, low)[:1])


def test_negative_priorities_wait_behind_the_default(store: Store):
    later = store.tasks.create_batch("later", new(2), T0, priority=-1)
    now = store.tasks.create_batch("now", new(2), T0 + 1)
    rows = claim(store, T0 + 10, slots=3)
    assert ids(rows) == sorted(ids_of(store, now) + ids_of(store, later)[:1])


def test_a_starved_priority_ages_one_step_per_interval(store: Store):
    """Priority 0, served at T0, then left without a slot: at 2 steps of aging it
    ties with priority 2 (just served) and, having waited longer, gets one slot;
    its wait then starts again."""
    big = store.tasks.create_batch("big", new(20), T0)
    first = claim(store, T0)
    assert [r.batch_id for r in first] == [big.id]
    finish(store, first, T0)
    urgent = store.tasks.create_batch("urgent", new(30), T0 + 1, priority=2)
    now = T0 + 1
    order = []
    while now < T0 + 2 * AGING + 5 * MINUTE:
        rows = claim(store, now)
        order.append((now, rows[0].batch_id))
        finish(store, rows, now)
        now += MINUTE
    big_turns = [at for at, b in order if b == big.id]
    # The urgent batch takes every slot until the big batch has waited 2 steps.
    assert big_turns == [T0 + 2 * AGING + 1]
    assert all(b == urgent.id for at, b in order if at != big_turns[0])


def test_a_level_never_served_waits_since_its_oldest_batch(store: Store):
    """Two batches of one priority, neither ever sent: the older one's store time
    starts the level's wait, so the level ages from then."""
    store.tasks.create_batch("old", new(2), T0)
    store.tasks.create_batch("new", new(2), T0 + 3 * AGING)
    urgent = store.tasks.create_batch("urgent", new(2), T0 + 3 * AGING, priority=3)
    # Priority 0 has waited 3 steps (since "old"), the urgent batch none: a tie at 3,
    # and the longer wait wins.
    rows = claim(store, T0 + 3 * AGING)
    assert rows[0].batch_id != urgent.id
    assert store.tasks.batch(rows[0].batch_id).name == "old"  # type: ignore[union-attr]


def test_a_claim_notes_the_batches_it_served(store: Store):
    a = store.tasks.create_batch("a", new(2), T0)
    b = store.tasks.create_batch("b", new(2), T0, priority=1)
    claim(store, T0 + 5, slots=2)
    assert store.tasks.batch(b.id).served_ms == T0 + 5  # type: ignore[union-attr]
    assert store.tasks.batch(a.id).served_ms is None  # type: ignore[union-attr]


def test_changing_a_priority_reorders_the_next_claims_and_is_an_event(store: Store):
    big = store.tasks.create_batch("big", new(5), T0)
    small = store.tasks.create_batch("small", new(2), T0 + 1)
    first = claim(store, T0 + 2)
    assert first[0].batch_id == big.id
    old, moved = store.tasks.set_priority(small.id, 7, T0 + 3, by="cli")
    assert (old, moved) == (0, 2)
    assert store.tasks.batch(small.id).priority == 7  # type: ignore[union-attr]
    finish(store, first, T0 + 3)
    rows = claim(store, T0 + 4, slots=3)
    assert ids(rows) == sorted([*ids_of(store, small), first[0].id + 1])
    task = store.tasks.task_ids_of_batch(small.id)[0]
    (event,) = [e for e in store.outbox.events(task_id=task) if e.kind == "priority"]
    assert event.payload == {"old": 0, "new": 7, "by": "cli"}
    assert event.at_ms == T0 + 3
    # The same priority again changes nothing and records nothing.
    assert store.tasks.set_priority(small.id, 7, T0 + 5) == (7, 0)
    with pytest.raises(StoreError, match="no batch with id 999"):
        store.tasks.set_priority(999, 1, T0)


def test_a_retry_keeps_the_priority(store: Store):
    from klingmon.store import retry_batch  # noqa: PLC0415 - only this test needs it

    b = store.tasks.create_batch("b", new(1), T0, priority=4)
    (row,) = claim(store, T0)
    store.tasks.mark_submitting(row.id, T0)
    store.tasks.mark_submitted(row.id, wire("k1", "failed", T0), T0, T0)
    again = retry_batch(store, b.id, T0 + 1)
    assert again.priority == 4


def test_workers_claiming_at_once_keep_the_order_and_the_slots(
    backend: Backend, store: Store
):
    """Six workers at one instant, four slots: the urgent batch's four tasks, once."""
    store.tasks.create_batch("big", new(50), T0)
    urgent = store.tasks.create_batch("urgent", new(4), T0 + 1, priority=9)
    workers = 6
    start = threading.Barrier(workers)
    stores = [backend.open() for _ in range(workers)]
    got: dict[int, list[TaskRow]] = {}

    def run(n: int) -> None:
        start.wait(timeout=10)
        got[n] = stores[n].tasks.claim_submissions(
            f"w{n}", T0 + 2, MINUTE, slots=4, aging_ms=AGING
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
    assert sorted(r.id for r in claimed) == store.tasks.task_ids_of_batch(urgent.id)


def test_a_run_of_one_batch_leaves_the_slots_a_sent_higher_batch_earns(store: Store):
    """Two runs of one batch each (two `watch`es): the lower one's claim takes only
    what is left after the higher batch's waiting tasks, while a live worker sends
    that batch; a batch nobody sends holds nothing back."""
    big = store.tasks.create_batch("big", new(10), T0)
    urgent = store.tasks.create_batch("urgent", new(2), T0 + 1, priority=5)

    def scoped(batch: BatchRow, now: int) -> list[int]:
        rows = store.tasks.claim_submissions(
            "w", now, 1, slots=3, batch_id=batch.id, aging_ms=AGING
        )
        return ids(rows)

    # Nobody sends the urgent batch: the big batch's run takes every free slot.
    assert scoped(big, T0 + 2) == ids_of(store, big)[:3]
    store.fleet.heartbeat("h:1:u", T0 + 10, {"slots": 3, "scope": urgent.id})
    store.fleet.heartbeat("h:2:b", T0 + 10, {"slots": 3, "scope": big.id})
    # Its leases ran out (lease 1 ms); now the urgent batch is sent: one slot is left.
    assert scoped(big, T0 + 20) == ids_of(store, big)[:1]
    assert scoped(urgent, T0 + 20) == ids_of(store, urgent)
    # A worker that sends every batch counts as sending the urgent batch too.
    store.fleet.worker_stopped("h:1:u", T0 + 30)
    store.fleet.heartbeat("h:3:all", T0 + 30, {"slots": 3})
    assert len(scoped(big, T0 + 40)) == 1  # its earlier lease expired: one again
    # The worker died (no heartbeat for 30 s): nothing is held back any more.
    assert len(scoped(big, T0 + 40 + 30_001)) == 3
