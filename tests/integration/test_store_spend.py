"""Spend control in the store, on SQLite and PostgreSQL: reservations in the slot
claim, caps, holds, settlement, and the learned prices."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from test_store_contract import EP, T0, backend, store, wire

from klingmon.domain import BatchState, TaskStatus
from klingmon.store import NewTask, Observation, SpendCaps

if TYPE_CHECKING:
    from klingmon.store import Store

#: The contract suite's fixtures: SQLite and PostgreSQL.
__all__ = ["backend", "store"]

KEY = (EP, "kling-v1", "std", "5", "")


def _batch(store: Store, n: int, units: float | None = 1.0, **kw: Any) -> int:
    tasks = [
        NewTask(EP, {"prompt": f"p{i}"}, prompt=f"p{i}", quoted_units=units)
        for i in range(n)
    ]
    return store.tasks.create_batch(None, tasks, T0, **kw).id


def _claim(store: Store, slots: int = 100, caps: SpendCaps | None = None) -> list[int]:
    rows = store.tasks.claim_submissions("w", T0, 60_000, slots=slots, caps=caps)
    return [r.id for r in rows]


def _finish(store: Store, task_id: int, status: str, **fields: Any) -> None:
    store.tasks.mark_submitting(task_id, T0)
    store.tasks.mark_submitted(task_id, wire(f"k{task_id}", "submitted", T0), T0, T0)
    snap = wire(f"k{task_id}", status, T0 + 5, **fields)
    obs = Observation(task_id, snap, "poll", T0 + 10)
    store.watch.apply([obs], T0 + 10)


def test_a_claim_reserves_and_never_passes_the_batch_cap(store: Store):
    """A 10-unit cap lets 10 one-unit tasks out; the 11th pauses the batch."""
    batch = _batch(store, 20, max_units=10.0)
    claimed = _claim(store)
    assert len(claimed) == 10
    assert store.spend.summary(batch).reserved == 10
    row = store.tasks.batch(batch)
    assert row is not None
    assert row.state == BatchState.PAUSED_BUDGET
    [event] = [e for e in store.outbox.events(batch_id=batch) if e.kind == "budget"]
    assert event.payload["reason"] == "over batch"
    assert _claim(store) == []  # paused: nothing more, not even after the lease


def test_settlement_charges_releases_and_leaves_undetermined(store: Store):
    """Charged by Kling's units, released by a failure, undetermined without word."""
    batch = _batch(store, 3, units=2.0)
    a, b, c = _claim(store)
    _finish(store, a, "succeed", final_unit_deduction="3")
    _finish(store, b, "failed", final_unit_deduction="0")
    _finish(store, c, "succeed")
    by_id = {t.id: t for t in store.tasks.tasks(batch)}
    assert (by_id[a].spend, by_id[a].spend_units) == ("charged", 3.0)
    assert (by_id[b].spend, by_id[b].spend_units) == ("released", 0.0)
    assert (by_id[c].spend, by_id[c].spend_units) == ("undetermined", 2.0)
    summary = store.spend.summary(batch)
    assert (summary.quoted, summary.charged, summary.undetermined) == (6.0, 3.0, 2.0)


def test_released_units_let_more_through_and_resume_raises_the_cap(store: Store):
    """A failure frees its reservation; resume with a higher cap goes on."""
    batch = _batch(store, 6, max_units=2.0)
    first, second = _claim(store)
    _finish(store, first, "failed", final_unit_deduction="0")
    assert _claim(store) == []  # paused already when the third did not fit
    assert store.spend.release(batch, state=BatchState.PAUSED_BUDGET, max_units=4)
    assert len(_claim(store)) == 3  # 1 charged-nothing + 1 reserved + 3 = 4
    assert store.tasks.batch(batch).state == BatchState.PAUSED_BUDGET  # type: ignore[union-attr]
    assert second


def test_account_caps_count_every_batch(store: Store):
    """A daily cap counts what every batch reserved today."""
    _batch(store, 3)
    _batch(store, 3)
    assert len(_claim(store, caps=SpendCaps(daily=4.0))) == 4


def test_a_held_batch_sends_nothing_until_released(store: Store):
    """Awaiting approval: never claimed, never due, not pending work; then it is."""
    batch = _batch(store, 2, state=BatchState.AWAITING_APPROVAL.value)
    assert _claim(store) == []
    assert store.watch.next_due_ms() is None
    assert not store.tasks.has_tasks([TaskStatus.QUEUED], skip_held=True)
    assert store.spend.release(batch, state=BatchState.AWAITING_APPROVAL)
    assert len(_claim(store)) == 2
    assert not store.spend.release(batch, state=BatchState.AWAITING_APPROVAL)


def test_an_unknown_price_never_goes_out_under_a_cap(store: Store):
    """Under a cap a task without a quote pauses its batch: nothing to check it by."""
    batch = _batch(store, 2, units=None, max_units=100.0)
    assert _claim(store) == []
    [event] = [e for e in store.outbox.events(batch_id=batch) if e.kind == "budget"]
    assert event.payload["reason"] == "price unknown"


def test_charges_teach_the_learned_prices(store: Store):
    """Every success's charge adds to its key's sums, per item."""
    _batch(store, 3)
    a, b, c = _claim(store)
    _finish(store, a, "succeed", final_unit_deduction="2")
    _finish(store, b, "succeed", final_unit_deduction="4")
    _finish(store, c, "failed", final_unit_deduction="0")
    learned = store.spend.learned_prices()[KEY]
    assert (learned.count, learned.units_each) == (2.0, 3.0)


def test_successes_are_found_by_request_hash_and_batches_add_up(store: Store):
    """succeeded_with finds the first success of a hash; by_batch sums the ledger."""
    tasks = [
        NewTask(EP, {"prompt": "p"}, quoted_units=1.0, request_hash=h)
        for h in ("h1", "h1", "h2")
    ]
    batch = store.tasks.create_batch(None, tasks, T0).id
    a, b, c = _claim(store)
    _finish(store, a, "succeed", final_unit_deduction="1")
    _finish(store, b, "succeed", final_unit_deduction="1")
    _finish(store, c, "failed", final_unit_deduction="0")
    assert store.tasks.succeeded_with(["h1", "h2", "h3"]) == {"h1": a}
    assert store.spend.by_batch() == {batch: (3.0, 2.0, 2.0)}
    repeat = NewTask(EP, {"prompt": "p"}, request_hash="h1", repeat_of=a)
    again = store.tasks.create_batch(None, [repeat], T0).id
    [row] = store.tasks.tasks(again)
    assert (row.status, row.repeat_of, row.spend) == (
        TaskStatus.CANCELLED,
        a,
        "released",
    )
    assert _claim(store) == []
