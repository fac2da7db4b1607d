"""An urgent batch overtakes a long run: the simulator over loopback says so."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

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


def _being_sent(monitor: Monitor, batch: BatchRow) -> set[str]:
    """The batch's tasks a claim holds a slot for that Kling may not have yet
    (leased, or ``submitting``): claimed before now, they may still land later."""
    now_ms = to_ms(monitor.clock.now())
    return {
        t.external_task_id
        for t in monitor.store.tasks.tasks(batch.id)
        if t.status is TaskStatus.SUBMITTING
        or (t.status is TaskStatus.QUEUED and (t.lease_until_ms or 0) > now_ms)
    }


def _fresh_creates(
    counters: dict[str, Any], claimed_before: set[str], since_ms: int
) -> list[str]:
    """The sim's own record: every create from ``since_ms`` on, in order, but for
    the tasks claimed before then (they held their slots already)."""
    creates = sorted(
        (t["transitions"][0][1], t["external_task_id"])
        for t in counters["tasks"].values()
    )
    return [e for at, e in creates if at >= since_ms and e not in claimed_before]


def _assert_urgent_first(after: list[str], urgent_ids: set[str]) -> None:
    """Each of the urgent tasks created since (a few may have been before) came
    before any other create: each slot freed went to them until none waited."""
    sent = urgent_ids & set(after)
    assert len(sent) >= 15, len(sent)  # nearly all of them came after the cut
    assert set(after[: len(sent)]) == sent, after[: len(sent) + 5]


async def test_an_urgent_batch_takes_the_next_freed_slots(tmp_path):
    """20 urgent tasks stored during a 1,000-task run on 5 slots are all sent
    within the next 20 slot releases: in the sim's own record of creates, the 20
    that follow the urgent batch's arrival are its tasks (besides big tasks claimed
    before it came, which held their slots then: at most the five)."""
    config = SimConfig(
        admin=True, seed=19, time_scale=2000.0, slots=SLOTS, faults=Faults(fail_rate=0)
    )
    with SimServer(config) as server:
        monitor = loopback_monitor(server.url, server.sim, tmp_path / "k.db")
        big = monitor.submit(_prompts(1000, "a long run"), batch="big")
        runner = asyncio.create_task(monitor.run(forever=True))
        sim = server.sim
        await _until(lambda: len(sim.counters()["creates_per_external_id"]) >= 30)
        urgent = monitor.submit(_prompts(20, "urgent"), batch="urgent", priority=10)
        # Every claim committed from here on sees the urgent batch.
        claimed = _being_sent(monitor, big)
        since_ms = to_ms(monitor.clock.now())
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
    assert len(claimed) <= SLOTS
    urgent_ids = {t.external_task_id for t in monitor.store.tasks.tasks(urgent.id)}
    after = _fresh_creates(counters, claimed, since_ms)
    _assert_urgent_first(after, urgent_ids)
    assert set(counters["creates_per_external_id"].values()) == {1}
    # The urgent batch was stored in the middle of the run: most of it still waits.
    assert len(counters["tasks"]) < 100


def _urgent_run_is_up(monitor: Monitor, batch: BatchRow) -> bool:
    workers = monitor.store.fleet.workers(to_ms(monitor.clock.now()))
    return any(w.alive and w.info.get("scope") == batch.id for w in workers)


async def test_two_runs_of_one_batch_each_follow_the_priorities(tmp_path):
    """`watch big` and, later, `submit rush --priority 10 --watch` in another process
    (here two monitors on one store): once the rush run is up, every freed slot goes
    to it until its 20 tasks are sent."""
    config = SimConfig(
        admin=True, seed=23, time_scale=2000.0, slots=SLOTS, faults=Faults(fail_rate=0)
    )
    db = tmp_path / "k.db"
    with SimServer(config) as server:
        first = loopback_monitor(server.url, server.sim, db)
        big = first.submit(_prompts(1000, "a long run"), batch="big")
        runner = asyncio.create_task(first.run(batch=big.id))
        sim = server.sim
        await _until(lambda: len(sim.counters()["creates_per_external_id"]) >= 30)
        second = loopback_monitor(server.url, server.sim, db)
        urgent = second.submit(_prompts(20, "urgent"), batch="urgent", priority=10)
        other = asyncio.create_task(second.run(batch=urgent.id))
        # Until its heartbeat says a run sends the urgent batch, big's run may not
        # hold slots back for it: claims from then on must.
        await _until(lambda: _urgent_run_is_up(second, urgent))
        claimed = _being_sent(second, big)
        since_ms = to_ms(second.clock.now())
        await asyncio.wait_for(other, timeout=30)
        first.stop()
        await asyncio.wait_for(runner, timeout=10)
        for monitor in (first, second):
            await monitor.aclose()
        counters = sim.counters()
    assert counters["max_in_flight"] <= SLOTS
    urgent_ids = {t.external_task_id for t in first.store.tasks.tasks(urgent.id)}
    after = _fresh_creates(counters, claimed, since_ms)
    last = max(i for i, ext in enumerate(after) if ext in urgent_ids)
    # Two processes: each claim leaves the urgent run the slots its waiting tasks
    # need, but only beyond them may the big run take one, and its create may
    # land before the urgent run's: that happens only as the last urgent tasks go.
    overtaken = [ext for ext in after[:last] if ext not in urgent_ids]
    assert len(overtaken) < SLOTS, after[: last + 1]
    assert len(urgent_ids & set(after)) >= 15


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
