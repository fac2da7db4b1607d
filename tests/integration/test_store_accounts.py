"""Several accounts in the store's claim, on SQLite and PostgreSQL.

A batch names the accounts it may be sent on; the claim places each of its queued
tasks on the account whose pool has most free slots, and fixes the task's account
and pool before its create can be sent, for good.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import TYPE_CHECKING, Any

from test_store_contract import T0, Backend, backend, store, wire

from klingmon.store import NewTask, SpendCaps, retry_batch

if TYPE_CHECKING:
    from klingmon.store import Store, TaskRow

__all__ = ["backend", "store"]  # the contract suite's fixtures, used here

MINUTE = 60_000
V3 = "/text-to-video/kling-3.0"
V26 = "/text-to-video/kling-2.6"
IMG = "/image-generation/kling-3.0"
#: Two accounts of 5 video slots and 10 image slots each.
SIZES = {
    f"{account}:{pool}": size
    for account in ("a", "b")
    for pool, size in (
        ("kling-3.0/video", 5),
        ("kling-2.6/video", 5),
        ("kling-3.0/image", 10),
    )
}


def tasks_of(endpoint: str, count: int, **body: Any) -> list[NewTask]:
    return [
        NewTask(endpoint, {"prompt": f"{endpoint} {i}", **body}) for i in range(count)
    ]


def claim(store: Store, now: int, owner: str = "w", **kw: Any) -> list[TaskRow]:
    kw.setdefault("slots", 20)
    kw.setdefault("pools", SIZES)
    return store.tasks.claim_submissions(owner, now, MINUTE, **kw)


def per_pool(rows: list[TaskRow]) -> Counter[str]:
    held: Counter[str] = Counter()
    for row in rows:
        held[row.pool] += row.slots
    return held


def test_a_batch_stores_its_accounts_and_its_tasks_wait_unplaced(store: Store):
    both = store.tasks.create_batch("both", tasks_of(V3, 2), T0, accounts=["b", "a"])
    one = store.tasks.create_batch("one", tasks_of(V3, 1), T0, accounts=["b"])
    plain = store.tasks.create_batch("plain", tasks_of(V3, 1), T0)
    assert store.tasks.batch("both").accounts == ("a", "b")
    assert store.tasks.batch(one.id).accounts == ("b",)
    assert store.tasks.batch(plain.id).accounts is None
    waiting = {(r.account, r.pool) for r in store.tasks.tasks(both.id)}
    assert waiting == {(None, "a+b:kling-3.0/video")}
    assert [(r.account, r.pool) for r in store.tasks.tasks(one.id)] == [
        ("b", "b:kling-3.0/video")
    ]
    assert [(r.account, r.pool) for r in store.tasks.tasks(plain.id)] == [
        ("default", "kling-3.0/video")
    ]


def test_a_claim_spreads_a_batch_by_free_slots_and_fixes_each_task(store: Store):
    """12 video tasks on two accounts of 5: 5 each, placed, the rest wait."""
    batch = store.tasks.create_batch(None, tasks_of(V3, 12), T0, accounts=["a", "b"])
    rows = claim(store, T0)
    assert per_pool(rows) == {"a:kling-3.0/video": 5, "b:kling-3.0/video": 5}
    assert {r.account for r in rows} == {"a", "b"}
    assert all(r.pool == f"{r.account}:kling-3.0/video" for r in rows)
    stored = {r.id: r for r in store.tasks.tasks(batch.id)}
    assert all(stored[r.id].account == r.account for r in rows)  # committed
    assert claim(store, T0 + 1) == []  # both pools are full
    unplaced = [r for r in stored.values() if r.account is None]
    assert len(unplaced) == 2


def test_the_freest_account_gets_the_next_task(store: Store):
    """Account a holds 4 of 5 already (its own batch): the spread batch goes to b
    until b is as full, then both fill."""
    store.tasks.create_batch("mine", tasks_of(V3, 4), T0, accounts=["a"])
    assert per_pool(claim(store, T0)) == {"a:kling-3.0/video": 4}
    store.tasks.create_batch("both", tasks_of(V3, 5), T0, accounts=["a", "b"])
    rows = claim(store, T0 + 1)
    assert [r.account for r in rows] == ["b", "b", "b", "b", "a"]
    assert per_pool(rows) == {"b:kling-3.0/video": 4, "a:kling-3.0/video": 1}


def test_images_of_n_fit_where_their_slots_are(store: Store):
    """n = 4 in pools of 10: two per account, the fifth waits for a finish."""
    store.tasks.create_batch(None, tasks_of(IMG, 5, n=4), T0, accounts=["a", "b"])
    rows = claim(store, T0)
    assert per_pool(rows) == {"a:kling-3.0/image": 8, "b:kling-3.0/image": 8}
    assert claim(store, T0 + 1) == []


def test_a_placed_task_never_moves_after_a_1303_or_a_crash(store: Store):
    """Requeued after a 1303, or left leased by a worker that died between its
    claim and its create: the task comes back on the same account."""
    store.tasks.create_batch(None, tasks_of(V3, 2), T0, accounts=["a", "b"])
    first = claim(store, T0)
    placed = {r.id: r.account for r in first}
    assert set(placed.values()) == {"a", "b"}
    refused = first[0]  # the other is left leased by a worker that then died
    store.tasks.mark_submitting(refused.id, T0)
    store.tasks.requeue(
        refused.id, T0, T0 + 1, "1303: parallel task over resource pack limit"
    )
    # The dead worker's lease on the other runs out unsent.
    again = claim(store, T0 + MINUTE + 1, owner="w2")
    assert {r.id: r.account for r in again} == placed
    assert {r.id: r.pool for r in again} == {r.id: r.pool for r in first}
    # Even with the other account now empty, a requeued task stays where it was.
    a_task = next(r for r in again if r.account == "a")
    store.tasks.requeue(a_task.id, T0 + MINUTE + 2, T0 + MINUTE + 2, "1303")
    b_task = next(r for r in again if r.account == "b")
    store.tasks.mark_submitting(b_task.id, T0 + MINUTE + 2)
    store.tasks.mark_submitted(
        b_task.id, wire("kb", "succeed", T0), T0 + MINUTE + 3, T0 + MINUTE + 3
    )
    last = claim(store, T0 + MINUTE + 4, owner="w3")
    assert [(r.id, r.account) for r in last] == [(a_task.id, "a")]


def test_an_account_s_own_slots_size_its_pools(store: Store):
    """``pools`` names b's pool at 2; a's falls back to ``slots`` (3)."""
    store.tasks.create_batch(None, tasks_of(V26, 10), T0, accounts=["a", "b"])
    rows = claim(store, T0, slots=3, pools={"b:kling-2.6/video": 2})
    assert per_pool(rows) == {"a:kling-2.6/video": 3, "b:kling-2.6/video": 2}


def test_pool_use_names_the_waiting_room_and_each_account_s_pool(store: Store):
    store.tasks.create_batch(None, tasks_of(V3, 12), T0, accounts=["a", "b"])
    claim(store, T0)
    use = {u.pool: (u.held, u.queued) for u in store.tasks.pool_use(T0 + 1)}
    assert use == {
        "a+b:kling-3.0/video": (0, True),
        "a:kling-3.0/video": (5, True),  # leased, still queued
        "b:kling-3.0/video": (5, True),
    }


def test_concurrent_workers_never_overfill_an_account_s_pool(
    backend: Backend, store: Store
):
    """Six workers claiming at once over a spread batch and single-account work:
    each task once, no pool of either account over its size."""
    store.tasks.create_batch("spread", tasks_of(V3, 20), T0, accounts=["a", "b"])
    store.tasks.create_batch("a only", tasks_of(V3, 3), T0, accounts=["a"])
    store.tasks.create_batch("images", tasks_of(IMG, 8, n=4), T0, accounts=["a", "b"])
    workers = 6
    start = threading.Barrier(workers)
    stores = [backend.open() for _ in range(workers)]
    got: dict[int, list[TaskRow]] = {}

    def run(n: int) -> None:
        start.wait(timeout=10)
        got[n] = claim(stores[n], T0, owner=f"w{n}")

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
    assert per_pool(claimed) == {
        "a:kling-3.0/video": 5,
        "b:kling-3.0/video": 5,
        "a:kling-3.0/image": 8,
        "b:kling-3.0/image": 8,
    }
    assert all(r.account is not None for r in claimed)


def test_a_retry_may_go_on_any_of_the_batch_s_accounts(store: Store):
    """A retried task is a new task (a new external id): its batch keeps the
    accounts, and the retry is placed afresh."""
    old = store.tasks.create_batch("old", tasks_of(V3, 1), T0, accounts=["a", "b"])
    (row,) = claim(store, T0)
    store.tasks.mark_submitting(row.id, T0)
    store.tasks.reject(row.id, T0, "refused", 1201)
    again = retry_batch(store, old.id, T0 + 1)
    assert again.accounts == ("a", "b")
    (retried,) = store.tasks.tasks(again.id)
    assert (retried.account, retried.pool) == (None, "a+b:kling-3.0/video")
    assert retried.external_task_id != row.external_task_id


def test_an_account_s_own_cap_pauses_only_what_goes_on_it(store: Store):
    """Account a may spend 2 units a day: its third task pauses its batch (a budget
    event names the cap); account b, with no cap of its own, sends all of its."""
    priced = [NewTask(V3, {"prompt": f"p{i}"}, quoted_units=1.0) for i in range(4)]
    on_a = store.tasks.create_batch("on a", priced, T0, accounts=["a"])
    on_b = store.tasks.create_batch("on b", priced, T0, accounts=["b"])
    caps = {"a": SpendCaps(daily=2.0)}
    rows = claim(store, T0, account_caps=caps)
    assert Counter(r.account for r in rows) == {"a": 2, "b": 4}
    assert store.tasks.batch(on_a.id).state == "paused_budget"
    assert store.tasks.batch(on_b.id).state is None
    (budget,) = [e for e in store.outbox.events(batch_id=on_a.id) if e.kind == "budget"]
    assert [c["cap"] for c in budget.payload["caps"]] == ["a daily"]


def test_a_spread_task_goes_to_an_account_that_can_pay_for_it(store: Store):
    """A batch on a and b where a may spend 1 unit more today: one task goes on a,
    the others on b while b has slots; the batch is not held, and what is left
    waits unplaced for b's next free slot."""
    priced = [NewTask(V3, {"prompt": f"p{i}"}, quoted_units=1.0) for i in range(8)]
    both = store.tasks.create_batch("both", priced, T0, accounts=["a", "b"])
    rows = claim(store, T0, account_caps={"a": SpendCaps(daily=1.0)})
    assert Counter(r.account for r in rows) == {"a": 1, "b": 5}
    assert store.tasks.batch(both.id).state is None
    unsent = [r for r in store.tasks.tasks(both.id) if r.id not in {x.id for x in rows}]
    assert len(unsent) == 2
    assert all(r.account is None for r in unsent)  # not placed: nothing was sent


def test_an_account_s_own_batch_leaves_its_budget_to_nobody_else(store: Store):
    """Account a may spend 2 units: a batch on a alone takes them in the same claim,
    so the spread batch's tasks all go on b."""
    priced = [NewTask(V3, {"prompt": f"p{i}"}, quoted_units=1.0) for i in range(2)]
    store.tasks.create_batch("on a", priced, T0, accounts=["a"])
    spread = [NewTask(V26, {"prompt": f"s{i}"}, quoted_units=1.0) for i in range(3)]
    both = store.tasks.create_batch("both", spread, T0, accounts=["a", "b"])
    rows = claim(store, T0, account_caps={"a": SpendCaps(daily=2.0)})
    assert Counter(r.account for r in rows if r.batch_id == both.id) == {"b": 3}
    assert Counter(r.account for r in rows if r.batch_id != both.id) == {"a": 2}
    assert store.tasks.batch(both.id).state is None


def test_a_spread_batch_no_account_can_pay_for_is_held(store: Store):
    """a may spend 1 unit, b 2: three tasks go out, the fourth fits no budget and
    holds the batch (a budget event names the cap), nothing more is placed."""
    priced = [NewTask(V3, {"prompt": f"p{i}"}, quoted_units=1.0) for i in range(6)]
    both = store.tasks.create_batch("both", priced, T0, accounts=["a", "b"])
    caps = {"a": SpendCaps(daily=1.0), "b": SpendCaps(daily=2.0)}
    rows = claim(store, T0, account_caps=caps)
    assert Counter(r.account for r in rows) == {"a": 1, "b": 2}
    assert store.tasks.batch(both.id).state == "paused_budget"
    (budget,) = [e for e in store.outbox.events(batch_id=both.id) if e.kind == "budget"]
    assert {c["cap"] for c in budget.payload["caps"]} <= {"a daily", "b daily"}
    unsent = [r for r in store.tasks.tasks(both.id) if r.id not in {x.id for x in rows}]
    assert all(r.account is None for r in unsent)
