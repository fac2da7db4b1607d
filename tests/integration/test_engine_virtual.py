"""The engine and the simulator on one virtual clock: hours of Kling time in moments."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine_support import virtual_monitor

from klingmon._clock import to_ms
from klingmon.api import Task, Text2VideoRequest, snapshot
from klingmon.domain import ACTIVE, TaskStatus
from klingmon.policy import StuckPolicy
from klingmon.sim import Faults, SimConfig, Simulator
from klingmon.store import Observation
from klingmon.testing import VirtualClock

if TYPE_CHECKING:
    from pathlib import Path

    from klingmon.engine import Monitor
    from klingmon.hooks import HookEvent


async def test_stuck_and_timed_out_tasks_raise_events_and_stay_tracked(tmp_path):
    """A stuck task and one past its deadline: events, hooks, and still watched."""
    clock = VirtualClock()
    sim = Simulator(
        SimConfig(admin=True, seed=9, faults=Faults(stuck_rate=1.0, fail_rate=0.0)),
        clock=clock,
    )
    monitor = virtual_monitor(
        sim,
        tmp_path / "k.db",
        clock,
        stuck=StuckPolicy(factor=1.0, floor_submitted=600.0, floor_processing=1800.0),
    )
    calls: dict[str, list[HookEvent]] = {"on_stuck": [], "on_timeout": []}
    monitor.on_stuck(calls["on_stuck"].append)
    monitor.on_timeout(calls["on_timeout"].append)
    stuck_batch = monitor.submit([Text2VideoRequest(prompt="never ends")], batch="s")
    late_batch = monitor.submit(
        [Text2VideoRequest(prompt="has a deadline")], batch="t", timeout=120.0
    )

    def both_seen(_: HookEvent) -> None:
        if calls["on_stuck"] and calls["on_timeout"]:
            monitor.stop()

    monitor.on_stuck(both_seen)
    monitor.on_timeout(both_seen)
    await asyncio.wait_for(monitor.run(forever=True), timeout=60)

    store = monitor.store
    [stuck] = store.tasks.tasks(stuck_batch.id)
    [late] = store.tasks.tasks(late_batch.id)
    assert {e.task.id for e in calls["on_timeout"]} == {late.id}
    assert stuck.id in {e.task.id for e in calls["on_stuck"]}
    assert [e.kind for e in store.outbox.events(task_id=late.id)].count(
        "watch_timeout"
    ) == 1
    assert [e.kind for e in store.outbox.events(task_id=stuck.id)].count("stuck") == 1
    for row in (stuck, late):
        assert row.status in ACTIVE
        assert row.next_poll_ms is not None
    assert late.watch_timeout
    assert stuck.stuck
    await monitor.aclose()


async def test_hooks_run_at_least_once_with_a_stable_idempotency_key(tmp_path):
    """A hook that fails once is called again with the same key; the rest go on."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=4, faults=Faults(fail_rate=0.0)), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock)
    keys: list[str] = []

    def flaky(event: HookEvent) -> None:
        keys.append(event.idempotency_key)
        if len(keys) == 1:
            raise RuntimeError("the webhook endpoint was down")

    monitor.on_succeed(flaky)
    batch = monitor.submit([Text2VideoRequest(prompt=f"p{i}") for i in range(3)])
    await asyncio.wait_for(monitor.run(batch=batch.id), timeout=20)
    tasks = monitor.store.tasks.tasks(batch.id)
    assert all(t.status == TaskStatus.SUCCEED for t in tasks)
    assert len(keys) == 4
    assert keys.count(keys[0]) == 2
    assert len(set(keys)) == 3
    assert monitor.store.outbox.outbox_backlog() == 0
    await monitor.aclose()


async def test_a_rejected_create_is_final_and_costs_nothing(tmp_path):
    """Kling refusing a create (1301) marks the task rejected with Kling's message."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(admin=True, seed=2), clock=clock)
    sim.script("create", status=400, code=1301, times=1)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock)
    failed: list[HookEvent] = []
    monitor.on_failed(failed.append)
    batch = monitor.submit([Text2VideoRequest(prompt="one")])
    await asyncio.wait_for(monitor.run(batch=batch.id), timeout=20)
    [task] = monitor.store.tasks.tasks(batch.id)
    assert task.status == TaskStatus.REJECTED
    assert [e.task.id for e in failed] == [task.id]
    assert sim.counters()["in_flight"] == 0
    await monitor.aclose()


async def test_polls_falling_due_together_share_one_sweep(tmp_path):
    """Tasks due within ``sweep_gap`` of a sweep wait for the next: one page for all."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=3, faults=Faults(fail_rate=0.0)), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock, slots=5)
    batch = monitor.submit([Text2VideoRequest(prompt=f"p{i}") for i in range(4)])
    engine = monitor.engine()
    store = monitor.store
    gap = engine.settings.schedule.endpoint_gap
    assert gap == 0.5

    def lists() -> int:
        return int(sim.counters()["requests_by_route"].get("list", 0))

    def due_now(*task_ids: int) -> None:
        store.watch.schedule([(t, to_ms(clock.now())) for t in task_ids])

    await engine.step()  # the four creates
    ids = [t.id for t in store.tasks.tasks(batch.id)]
    assert all(t.status == TaskStatus.SUBMITTED for t in store.tasks.tasks(batch.id))
    due_now(ids[0])
    await engine.step()
    assert lists() == 1
    clock.advance(gap * 0.2)
    due_now(ids[1])
    await engine.step()
    clock.advance(gap * 0.6)
    due_now(ids[2])
    await engine.step()
    assert lists() == 1  # both wait for the gap to pass
    clock.advance(gap * 0.2)
    await engine.step()
    assert lists() == 2  # one page answered both
    polls = {t.id: t.polls for t in store.tasks.tasks(batch.id)}
    assert polls == {ids[0]: 1, ids[1]: 1, ids[2]: 1, ids[3]: 0}
    await monitor.aclose()


async def test_a_sweep_moves_only_the_unchanged_polls_that_are_near(tmp_path):
    """A task the page showed unchanged moves only when its own poll would likely
    come before the next sweep: one further off would land about where it was, at a
    write per task per sweep. (Work waits for a slot: once nothing does, a batch's
    last polls are all brought within ``done_lag``.)"""
    clock, _, monitor, (due, near, far) = await _swept_once(tmp_path, waiting=2)
    engine, store = monitor.engine(), monitor.store
    clock.advance(1.0)  # the next comes a second later: sweeps are frequent
    now = to_ms(clock.now())
    lag = to_ms(engine.settings.schedule.target_lag)
    store.watch.schedule([(due, now), (near, now + lag // 2), (far, now + 3 * lag)])
    await engine.step()  # one page shows all three, none changed
    after = {t.id: t for t in store.tasks.tasks() if t.id in (due, near, far)}
    assert {t.status for t in after.values()} == {TaskStatus.SUBMITTED}
    assert after[due].polls == 2
    assert after[near].next_poll_ms != now + lag // 2  # moved as if polled
    assert after[far].next_poll_ms == now + 3 * lag  # left where it was
    await monitor.aclose()


async def test_on_a_slow_endpoint_a_poll_left_from_an_ended_phase_moves(tmp_path):
    """A callback moved the tasks on; their polls still aim at the old phase's p99.
    Sweeps come 40 s apart, so one due within two such gaps moves now instead of
    costing a sweep of its own."""
    clock, sim, monitor, (due, stale, _) = await _swept_once(tmp_path)
    engine, store = monitor.engine(), monitor.store
    clock.advance(40.0)
    now = to_ms(clock.now())
    # What the callbacks said meanwhile ("processing"), applied as the receiver does.
    seen = [
        Observation(
            row.id,
            snapshot(Task.model_validate(view)),
            "callback",
            now,
            confirmed=True,
        )
        for row in store.tasks.tasks()
        if (view := sim.query(row.endpoint, row.task_id or "").payload["data"])
    ]
    store.watch.apply(seen, now)
    assert {t.status for t in store.tasks.tasks()} == {TaskStatus.PROCESSING}
    lag = to_ms(engine.settings.schedule.target_lag)
    store.watch.schedule([(due, now), (stale, now + 3 * lag)])  # 30 s: within 2 x 40 s
    await engine.step()  # the page shows nothing new
    assert store.tasks.task(stale).next_poll_ms != now + 3 * lag
    await monitor.aclose()


async def _swept_once(
    tmp_path: Path, *, waiting: int = 0
) -> tuple[VirtualClock, Simulator, Monitor, list[int]]:
    """Three tasks submitted on a 3-slot account, the first polled by one sweep;
    ``waiting`` more queued behind them."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=3, faults=Faults(fail_rate=0.0)), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock, slots=3)
    batch = monitor.submit(
        [Text2VideoRequest(prompt=f"p{i}") for i in range(3 + waiting)]
    )
    engine = monitor.engine()
    await engine.step()  # the three creates
    ids = [t.id for t in monitor.store.tasks.tasks(batch.id)][:3]
    monitor.store.watch.schedule([(ids[0], to_ms(clock.now()))])
    await engine.step()  # a first sweep: how often this endpoint is swept is unknown
    return clock, sim, monitor, ids
