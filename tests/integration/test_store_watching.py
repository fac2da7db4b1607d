"""The store's scoped claim and the watch view's counts, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from test_store_contract import T0, backend, new, store, wire

from klingmon.store import Observation

if TYPE_CHECKING:
    from klingmon.store import Store

__all__ = ["backend", "store"]  # the contract suite's fixtures, used here


def test_a_scoped_claim_leases_only_that_batch_and_counts_every_slot(store: Store):
    """Batch b's claim takes none of a's tasks, yet a's in-flight task holds a slot."""
    a = store.tasks.create_batch("a", new(3), T0)
    b = store.tasks.create_batch("b", new(3), T0)
    first = store.tasks.claim_submissions("w", T0, 60_000, slots=3, batch_id=a.id)
    assert {r.batch_id for r in first} == {a.id}
    store.tasks.mark_submitting(first[0].id, T0)
    store.tasks.mark_submitted(first[0].id, wire("k1", "submitted", T0), T0, T0 + 1000)
    store.fleet.release("w")
    later = T0 + 1
    mine = store.tasks.claim_submissions("v", later, 60_000, slots=3, batch_id=b.id)
    assert [r.batch_id for r in mine] == [b.id, b.id]  # a's task holds the third
    assert store.reports.slots_by_batch() == {a.id: 1}


def test_next_due_ignores_other_batches_queue_when_scoped(store: Store):
    """A scoped engine does not wake for a queue it will not send."""
    a = store.tasks.create_batch("a", new(1), T0)
    b = store.tasks.create_batch("b", new(1), T0 + 5)
    assert store.watch.next_due_ms() == T0
    assert store.watch.next_due_ms(queued_batch_id=b.id) == T0 + 5
    store.tasks.claim_submissions("w", T0, 60_000, slots=1, batch_id=a.id)
    store.tasks.mark_submitting(1, T0)
    store.tasks.mark_submitted(1, wire("k1", "submitted", T0), T0, T0 + 1000)
    assert store.watch.next_due_ms(queued_batch_id=a.id) == T0 + 1000


def test_files_owed_counts_files_not_fetched(store: Store):
    """Each succeeded task's files count as owed until their download is done."""
    batch = store.tasks.create_batch("a", new(2), T0)
    result = {"videos": [{"id": "v", "url": "https://cdn.example/v.mp4"}]}
    for row in store.tasks.claim_submissions("w", T0, 60_000, slots=2):
        store.tasks.mark_submitting(row.id, T0)
        store.tasks.mark_submitted(row.id, wire(f"k{row.id}", "submitted", T0), T0, T0)
    assert store.downloads.files_owed(batch.id) == 0
    finished = [
        Observation(
            row.id,
            wire(f"k{row.id}", "succeed", T0 + 10, task_result=result),
            "poll",
            T0 + 10,
        )
        for row in store.tasks.tasks(batch.id)
    ]
    store.watch.apply(finished, T0 + 10)
    assert store.downloads.files_owed(batch.id) == 2
    first = store.downloads.claim_downloads("w", T0 + 20, 60_000, 1, batch_id=batch.id)[
        0
    ]
    store.downloads.download_done(first.id, T0 + 30, size=1, sha256="0" * 64)
    assert store.downloads.files_owed(batch.id) == 1
    assert store.downloads.files_owed(batch.id + 1) == 0


def test_a_success_recorded_by_the_create_path_is_owed_too(store: Store):
    """A create found already finished (a lost answer, then a lookup) owes its file,
    whether or not that path queued a download row."""
    batch = store.tasks.create_batch("a", new(1), T0)
    result = {"videos": [{"id": "v", "url": "https://cdn.example/v.mp4"}]}
    (row,) = store.tasks.claim_submissions("w", T0, 60_000, slots=1)
    store.tasks.mark_submitting(row.id, T0)
    done = wire("k1", "succeed", T0 + 10, task_result=result)
    store.tasks.mark_submitted(row.id, done, T0 + 10, T0 + 10)
    assert store.downloads.files_owed(batch.id) == 1
