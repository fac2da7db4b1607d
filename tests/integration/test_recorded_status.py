"""Every path that records a status writes what it obliges, as a poll would.

A success owes its files in the same transaction, whoever recorded it: a poll, a
create's answer, the lookup after a lost answer, an adopted task (``track``,
``import``); each change has its event and, for hooks, its outbox row.
"""

from __future__ import annotations

from typing import Any

from test_store_contract import EP, T0, backend, store

from klingmon.api import snapshot
from klingmon.api._models import Task
from klingmon.domain import Snapshot, TaskStatus
from klingmon.store import NewTask, Observation, Store

#: The contract suite's fixtures: SQLite and PostgreSQL (a failure, not a skip, when
#: CI requires the server).
__all__ = ["backend", "store"]


def _task(task_id: str, status: str, **fields: Any) -> Snapshot:
    result = (
        {"videos": [{"id": f"v{task_id}", "url": f"https://cdn.example/{task_id}.mp4"}]}
        if status == "succeed"
        else {}
    )
    return snapshot(
        Task.model_validate(
            {
                "task_id": task_id,
                "task_status": status,
                "created_at": T0,
                "updated_at": T0 + 1000,
                "task_result": result,
                **fields,
            }
        )
    )


def _queued(store: Store, n: int = 1) -> list[int]:
    tasks = [NewTask(EP, {"prompt": f"p{i}"}, prompt=f"p{i}") for i in range(n)]
    batch = store.tasks.create_batch(None, tasks, T0)
    return [t.id for t in store.tasks.tasks(batch.id)]


def _hooked(store: Store, task_id: int) -> list[TaskStatus | None]:
    """The statuses hooks will hear of for ``task_id`` (events with an outbox row)."""
    items = store.outbox.claim_outbox("t", T0 + 10**9, 60_000, 1000)
    return [i.event.new_status for i in items if i.event.task_id == task_id]


def test_a_lookup_that_finds_a_lost_create_finished_owes_its_files(store: Store):
    """submitting -> succeed through mark_submitted: files owed, event, outbox."""
    [task_id] = _queued(store)
    store.tasks.mark_submitting(task_id, T0)
    change = store.tasks.mark_submitted(task_id, _task("k1", "succeed"), T0 + 5, T0 + 5)
    assert change is not None
    assert change.new_status is TaskStatus.SUCCEED
    [row] = store.downloads.download_rows(task_id=task_id)
    assert (row.status, row.url) == ("pending", "https://cdn.example/k1.mp4")
    assert store.downloads.files_owed() == 1
    assert _hooked(store, task_id) == [TaskStatus.SUBMITTING, TaskStatus.SUCCEED]
    store.downloads.download_done(row.id, T0 + 9, size=1, sha256="0" * 64)
    assert store.downloads.files_owed() == 0


def test_an_adopted_task_already_finished_owes_its_files(store: Store):
    """track/import of a succeeded task: its files and an event, like a poll's."""
    adopted = [
        NewTask(EP, {}, external_task_id="ext-1", task=_task("k7", "succeed")),
        NewTask(EP, {}, external_task_id="ext-2", task=_task("k8", "processing")),
    ]
    batch = store.tasks.create_batch("adopted", adopted, T0)
    done, running = store.tasks.tasks(batch.id)
    assert (done.status, running.status) == (TaskStatus.SUCCEED, TaskStatus.PROCESSING)
    assert [r.url for r in store.downloads.download_rows(batch.id)] == [
        "https://cdn.example/k7.mp4"
    ]
    assert store.downloads.files_owed(batch.id) == 1
    assert _hooked(store, done.id) == [TaskStatus.SUCCEED]
    assert [
        (e.old_status, e.new_status) for e in store.outbox.events(task_id=running.id)
    ] == [(None, TaskStatus.PROCESSING)]


def test_an_unconfirmed_callback_owes_nothing_and_a_poll_then_does(store: Store):
    """Only a vouched-for success is fetched; a poll of it later owes the files."""
    [task_id] = _queued(store)
    store.tasks.mark_submitting(task_id, T0)
    store.tasks.mark_submitted(task_id, _task("k1", "processing"), T0, T0)
    hint = Observation(task_id, _task("k1", "succeed"), "callback", T0 + 1)
    [change] = store.watch.apply([hint], T0 + 1)
    assert change.new_status is TaskStatus.SUCCEED
    assert store.downloads.download_rows(task_id=task_id) == []
    poll = Observation(task_id, _task("k1", "succeed"), "poll", T0 + 2)
    assert store.watch.apply([poll], T0 + 2) == []
    assert len(store.downloads.download_rows(task_id=task_id)) == 1


def test_adopting_many_finished_tasks_owes_every_file(store: Store):
    """1,200 files owed at once: more than one INSERT's worth of parameters."""
    adopted = [
        NewTask(EP, {}, external_task_id=f"e{i}", task=_task(f"k{i}", "succeed"))
        for i in range(1200)
    ]
    batch = store.tasks.create_batch("many", adopted, T0)
    assert len(store.downloads.download_rows(batch.id)) == 1200
    assert store.downloads.ensure_downloads(T0) == 0  # already owed: idempotent
