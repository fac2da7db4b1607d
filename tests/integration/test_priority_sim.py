"""An urgent batch overtakes a long run: the simulator over loopback says so."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest
from engine_support import loopback_monitor

from klingmon._clock import to_ms
from klingmon.api import Text2VideoRequest
from klingmon.domain import TaskStatus
from klingmon.engine import Monitor
from klingmon.errors import NotFoundError, UsageError
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from klingmon.store import BatchRow

SLOTS = 5


def _prompts(n: int, what: str) -> list[Text2VideoRequest]:
    return [Text2VideoRequest(prompt=f"{what} clip number {i}") for i in range(n)]


async def _until(check: object, timeout: float = 30.0) -> None:
    """Wait (polling the condition, never a fixed sleep) until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():  # type: ignore[operator]
        assert loop.time() < deadline, "the condition never held"
        await asyncio.sleep(0.005)


def _all_sent(monitor: Monitor, batch: BatchRow) -> bool:
    waiting = (TaskStatus.QUEUED, TaskStatus.SUBMITTING)
    return not monitor.store.tasks.has_tasks(waiting, batch.id)


def _send_started_ms(monitor: Monitor, batch: BatchRow) -> dict[str, int]:
    """Each task's first move to ``submitting`` (its claim), by external id."""
    started: dict[str, int] = {}
    by_id = {t.id: t.external_task_id for t in monitor.store.tasks.tasks(batch.id)}
    for event in monitor.store.outbox.events(batch_id=batch.id):
        if event.new_status is TaskStatus.SUBMITTING:
            started.setdefault(by_id[event.task_id], event.at_ms)
    return started


async def test_an_urgent_batch_takes_the_next_freed_slots(tmp_path):
    """20 urgent tasks stored during a 1,000-task run on 5 slots are all sent
    within the next 20 slot releases: in the sim's own record of creates, the 20
    that follow the urgent batch's arrival are its tasks (besides big tasks whose
    send had already begun, which held their slots then)."""
    config = SimConfig(
        admin=True, seed=19, time_scale=2000.0, slots=SLOTS, faults=Faults(fail_rate=0)
    )
    with SimServer(config) as server:
        monitor = loopback_monitor(server.url, server.sim, tmp_path / "k.db")
        big = monitor.submit(_prompts(1000, "a long run"), batch="big")
        runner = asyncio.create_task(monitor.run(forever=True))
        sim = server.sim
        await _until(lambda: len(sim.counters()["creates_per_external_id"]) >= 30)
        stored_ms = to_ms(monitor.clock.now())
        urgent = monitor.submit(_prompts(20, "urgent"), batch="urgent", priority=10)
        # Until it is all sent, or plainly is not (FIFO would need ~1,000 creates).
        await _until(
            lambda: (
                _all_sent(monitor, urgent)
                or len(sim.counters()["creates_per_external_id"]) >= 200
            )
        )
        monitor.stop()
        await asyncio.wait_for(runner, timeout=10)
        await monitor.aclose()
        counters = sim.counters()
    assert counters["max_in_flight"] <= SLOTS
    urgent_ids = {t.external_task_id for t in monitor.store.tasks.tasks(urgent.id)}
    big_started = _send_started_ms(monitor, big)
    creates = sorted(
        (t["transitions"][0][1], t["external_task_id"])
        for t in counters["tasks"].values()
    )
    # Big tasks already being sent when the urgent batch was stored may still land;
    # every create after them, up to the last urgent one, is urgent.
    after = [
        ext
        for at, ext in creates
        if at >= stored_ms and not big_started.get(ext, stored_ms) < stored_ms
    ]
    assert set(after[:20]) == urgent_ids, after[:25]
    assert set(counters["creates_per_external_id"].values()) == {1}
    # The big tasks whose send had begun held their slots already: at most all five.
    landing = [ext for at, ext in creates if at >= stored_ms and ext not in after]
    assert len(landing) <= SLOTS
    # The urgent batch was stored in the middle of the run: most of it still waits.
    assert len(big_started) < 100


def test_the_library_sets_and_changes_a_priority(tmp_path):
    """Monitor.submit(priority=) and Monitor.set_priority, limits checked."""
    monitor = Monitor(store=Store.open(str(tmp_path / "k.db")))
    with monitor.store:
        row = monitor.submit(_prompts(2, "x"), batch="x", priority=4)
        assert row.priority == 4
        changed = monitor.set_priority("x", -1)
        assert (changed.id, changed.priority) == (row.id, -1)
        events = monitor.store.outbox.events(batch_id=row.id)
        assert [e.payload["by"] for e in events if e.kind == "priority"] == [
            "library"
        ] * 2
        with pytest.raises(UsageError, match=r"within -1000000\.\.1000000, not 10"):
            monitor.set_priority("x", 10**7)
        with pytest.raises(UsageError, match="priority must be within"):
            monitor.submit(_prompts(1, "y"), priority=-(10**7))
        with pytest.raises(NotFoundError, match="no batch 'nope'"):
            monitor.set_priority("nope", 1)
