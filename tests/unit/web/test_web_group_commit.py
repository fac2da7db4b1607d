"""Callbacks that arrive together share one commit and are each answered after it."""

from __future__ import annotations

import asyncio

import pytest
from web_support import (
    SECRET,
    app_for,
    body,
    client,
    fresh_clock,
    tracked_store,
    url,
)

from klingmon.domain import TaskStatus
from klingmon.store import Store
from klingmon.web import Receiver, ReceiverSettings


@pytest.fixture
def clock():
    return fresh_clock()


async def test_concurrent_callbacks_are_all_committed_before_their_answers(
    tmp_path, clock
):
    """Each answer comes after a commit that a fresh Store already sees."""
    n = 24
    woken: list[tuple[str, bool]] = []
    with tracked_store(tmp_path, clock, n) as store, Store.open(store.url) as fresh:
        app = app_for(store, clock, woken=woken)

        async def post(i: int) -> tuple[int, TaskStatus | None]:
            answer = await http.post(url(i), content=body(i, "processing", clock))
            row = fresh.tasks.task(f"km-{i}")  # another engine: only committed data
            return answer.status_code, None if row is None else row.status

        async with client(app) as http:
            seen = await asyncio.gather(*(post(i) for i in range(n)))
        group = app.state.receiver._group
    assert seen == [(200, TaskStatus.PROCESSING)] * n
    assert woken == [("/v1/videos/text2video", False)] * n
    assert group.items == n
    assert group.groups < n  # folded into fewer commits than callbacks


async def test_a_group_answers_each_callback_as_if_alone(tmp_path, clock):
    """Refusals, a hint and a task named twice, all in one group, keep their rules."""
    with tracked_store(tmp_path, clock, 2) as store:
        receiver = Receiver(store, SECRET, ReceiverSettings(), clock)
        token = {i: url(i).rsplit("/", 1)[1] for i in (0, 1)}
        deliveries = [
            (token[0], body(0, "processing", clock)),
            (token[0], body(0, "succeed", clock)),  # judged after the first: a hint
            (token[0], body(0, "processing", clock, task_id="kt-9", task_info={})),
            (token[0], body(1, "processing", clock)),  # task 0's token for task 1
            (token[1], body(1, "processing", clock)),
        ]
        outcomes = await asyncio.gather(
            *(receiver.handle_async(t, raw, {}) for t, raw in deliveries)
        )
        assert [(o.status_code, o.reason) for o in outcomes] == [
            (200, "applied"),
            (202, "hint"),
            (403, "bad_token"),  # unknown, and no token of its own: as a bad token
            (403, "bad_token"),
            (200, "applied"),
        ]
        assert receiver._group.groups == 1
        first = store.tasks.task("km-0")
        assert first is not None
        assert first.status == TaskStatus.PROCESSING  # the hint waits for a poll
        kinds = [(e.source, e.kind) for e in store.outbox.events(task_id=first.id)]
        assert ("callback", "hint") in kinds
        second = store.tasks.task("km-1")
        assert second is not None
        assert second.status == TaskStatus.PROCESSING


def test_handle_commits_one_callback_on_its_own(tmp_path, clock):
    """The blocking entry point takes a callback in a transaction of its own."""
    with tracked_store(tmp_path, clock) as store:
        receiver = Receiver(store, SECRET, ReceiverSettings(), clock)
        token = url(0).rsplit("/", 1)[1]
        outcome = receiver.handle(token, body(0, "processing", clock), {})
        assert (outcome.status_code, outcome.reason) == (200, "applied")
        assert receiver.handle(token, b"{", {}).status_code == 400
        row = store.tasks.task("km-0")
        assert row is not None
        assert row.status == TaskStatus.PROCESSING
