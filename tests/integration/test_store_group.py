"""Group commit on every backend: writers share a commit; a bad item fails alone."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import httpx
import pytest
import sqlalchemy as sa
import test_store_contract as contract
from test_store_contract import T0, submitted, wire

from klingmon.domain import TaskStatus
from klingmon.errors import StoreError
from klingmon.store import Observation, Store
from klingmon.store._group import GroupCommit
from klingmon.web import callback_token, create_app

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from test_store_contract import Backend

    from klingmon.store import TaskRow

# The contract suite's fixtures: SQLite in a file, PostgreSQL in a fresh schema.
backend = contract.backend
store = contract.store

OFFLOADS: dict[str, Callable[..., Awaitable[object]] | None] = {
    "on-the-loop": None,
    "in-a-thread": asyncio.to_thread,
}


def _processing(ids: Sequence[int]) -> list[Observation]:
    return [
        Observation(i, wire(f"k{i}", "processing", T0 + 5000), "callback", T0 + 6000)
        for i in ids
    ]


@pytest.mark.parametrize("offload", OFFLOADS.values(), ids=OFFLOADS.keys())
async def test_concurrent_items_commit_together_and_durably(
    backend: Backend, store: Store, offload: Callable[..., Awaitable[object]] | None
):
    """Each caller is answered after a commit a fresh connection already sees."""
    ids = submitted(store, 24)

    def work(items: Sequence[int]) -> list[int]:
        store.watch.apply(_processing(items), T0 + 6000)
        return list(items)

    group = GroupCommit(store, work, offload=offload)
    with backend.open() as fresh:

        async def one(task_id: int) -> TaskStatus:
            assert await group.run(task_id) == task_id
            row = fresh.tasks.task(task_id)  # another engine: only committed data
            assert row is not None
            return row.status

        seen = await asyncio.gather(*(one(i) for i in ids))
    assert seen == [TaskStatus.PROCESSING] * len(ids)
    assert group.items == len(ids)
    assert group.groups < len(ids)  # folded: fewer commits than callers


async def test_a_failing_item_fails_alone(backend: Backend, store: Store):
    """One item's error rolls back only that item; the others commit once each."""
    ids = submitted(store, 6)
    bad = ids[2]

    def work(items: Sequence[int]) -> list[int]:
        store.watch.apply(_processing(items), T0 + 6000)
        if bad in items:
            with store.transaction() as conn:  # PostgreSQL aborts at the first error
                conn.execute(sa.text("SELECT * FROM no_such_table"))
        return list(items)

    group = GroupCommit(store, work)
    results = await asyncio.gather(*(group.run(i) for i in ids), return_exceptions=True)
    assert isinstance(results[2], StoreError)
    assert [r for r in results if not isinstance(r, BaseException)] == [
        i for i in ids if i != bad
    ]
    with backend.open() as fresh:
        for task_id in ids:
            row = fresh.tasks.task(task_id)
            assert row is not None
            changes = [
                e
                for e in fresh.outbox.events(task_id=task_id)
                if e.source == "callback"
            ]
            if task_id == bad:
                assert row.status == TaskStatus.SUBMITTED
                assert changes == []
            else:  # run twice (group, then alone) but committed once
                assert row.status == TaskStatus.PROCESSING
                assert len(changes) == 1


async def test_an_error_raised_by_work_reaches_only_its_caller(store: Store):
    """A plain exception from ``work`` for one item is that caller's exception."""

    def work(items: Sequence[str]) -> list[str]:
        for key in items:
            store.meta.set(key, "v")
            if key == "bad":
                raise ValueError("refused")
        return list(items)

    group = GroupCommit(store, work)
    keys = ["a", "bad", "c"]
    results = await asyncio.gather(
        *(group.run(k) for k in keys), return_exceptions=True
    )
    assert results[0] == "a"
    assert isinstance(results[1], ValueError)
    assert results[2] == "c"
    assert [store.meta.get(k) for k in keys] == ["v", None, "v"]


def test_calls_inside_a_transaction_join_it(backend: Backend, store: Store):
    """Every call in ``transaction()`` commits with it, or not at all."""

    def abandoned() -> None:
        with store.transaction():
            store.meta.set("x", "1")
            with store.transaction():  # a nested block joins the outer one
                store.meta.set("y", "1")
            assert store.meta.get("x") == "1"  # reads see the block's own writes
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError, match="abandon"):
        abandoned()
    with backend.open() as fresh:
        assert (fresh.meta.get("x"), fresh.meta.get("y")) == (None, None)
    with store.transaction():
        store.meta.set("x", "2")
        store.meta.set("y", "2")
    with backend.open() as fresh:
        assert (fresh.meta.get("x"), fresh.meta.get("y")) == ("2", "2")


def test_apply_gives_each_change_its_own_event(store: Store):
    """Events written together still map to the right change, in order."""
    ids = submitted(store, 5)
    twice = ids[0]
    observations = [
        *_processing(ids),
        Observation(twice, wire(f"k{twice}", "failed", T0 + 9000), "poll", T0 + 9500),
    ]
    changes = store.watch.apply(observations, T0 + 9500)
    assert [(c.task.id, c.new_status) for c in changes] == [
        *((i, TaskStatus.PROCESSING) for i in ids),
        (twice, TaskStatus.FAILED),
    ]
    assert changes[0].task.status == TaskStatus.PROCESSING  # the row as it left it
    by_id = {e.id: e for e in store.outbox.events()}
    for change in changes:
        event = by_id[change.event_id]
        assert (event.task_id, event.new_status) == (change.task.id, change.new_status)
    assert store.outbox.outbox_backlog() >= len(changes)


def test_match_tasks_finds_tasks_as_task_does(store: Store):
    """By external id first, else Kling's task id, else an external id equal to it."""
    ids = submitted(store, 3)
    rows = [store.tasks.task(i) for i in ids]
    assert all(rows)
    a, b, c = (r for r in rows if r is not None)
    found = store.tasks.match_tasks(
        [
            (a.external_task_id, "no-such-kling-id"),
            (None, b.task_id),
            ("no-such-external", c.task_id),
            (None, c.external_task_id),
            ("nobody", "nothing"),
            (None, None),
        ]
    )
    assert [f.id if f else None for f in found] == [a.id, b.id, c.id, c.id, None, None]
    assert found[0] is not None
    assert found[0].status == TaskStatus.SUBMITTED
    assert found[0].endpoint == a.endpoint


async def test_the_receiver_commits_concurrent_callbacks_on_every_backend(
    backend: Backend, store: Store
):
    """Through the web app (on the loop for SQLite, a thread for PostgreSQL)."""
    secret = b"s" * 32
    ids = submitted(store, 12)
    rows = [store.tasks.task(i) for i in ids]
    app = create_app(store, secret=secret)
    with backend.open() as fresh:

        async def post(row: TaskRow) -> TaskStatus | None:
            raw = json.dumps(
                {
                    "task_id": row.task_id,
                    "task_status": "processing",
                    "updated_at": T0 + 5000,
                    "task_info": {"external_task_id": row.external_task_id},
                }
            )
            path = "/callbacks/kling/" + callback_token(secret, row.external_task_id)
            answer = await http.post(path, content=raw)
            assert answer.json() == {"status": "applied"}
            seen = fresh.tasks.task(row.id)
            return None if seen is None else seen.status

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1"
        ) as http:
            seen = await asyncio.gather(*(post(r) for r in rows if r is not None))
    assert seen == [TaskStatus.PROCESSING] * len(ids)
