"""The engine against the simulator over loopback HTTP: slots, sweeps, outcomes."""

from __future__ import annotations

import asyncio

from engine_support import loopback_monitor

from klingmon.api import Text2VideoRequest
from klingmon.domain import TERMINAL, TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer


def _prompts(n: int) -> list[Text2VideoRequest]:
    return [Text2VideoRequest(prompt=f"a short clip number {i}") for i in range(n)]


async def test_batch_larger_than_the_slots_flows_through(tmp_path):
    """200 tasks on a 5-slot account: never more than 5 in flight, hardly any 1303."""
    config = SimConfig(
        admin=True, seed=3, time_scale=3000.0, slots=5, faults=Faults(fail_rate=0.05)
    )
    with SimServer(config) as server:
        monitor = loopback_monitor(server.url, server.sim, tmp_path / "k.db", slots=5)
        batch = monitor.submit(_prompts(200), batch="flow")
        await asyncio.wait_for(monitor.run(batch=batch.id), timeout=50)
        await monitor.aclose()
        counters = server.sim.counters()
    store_tasks = monitor.store.tasks.tasks(batch.id)
    assert len(store_tasks) == 200
    assert all(t.status in TERMINAL for t in store_tasks)
    assert counters["max_in_flight"] <= 5
    assert counters["answers_1303"] <= 3
    creates = counters["creates_per_external_id"]
    assert sorted(creates) == sorted(t.external_task_id for t in store_tasks)
    assert set(creates.values()) == {1}
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    assert {t.task_id: t.status.value for t in store_tasks} == truth


async def test_list_sweeps_carry_monitoring_of_many_active_tasks(tmp_path):
    """With 200 active tasks, list pages answer at least 10x the polls GETs would."""
    config = SimConfig(
        admin=True, seed=5, time_scale=400.0, slots=200, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as server:
        monitor = loopback_monitor(
            server.url, server.sim, tmp_path / "k.db", slots=200, rate=500.0
        )
        batch = monitor.submit(_prompts(200), batch="sweep")
        await asyncio.wait_for(monitor.run(batch=batch.id), timeout=50)
        await monitor.aclose()
        counters = server.sim.counters()
    tasks = monitor.store.tasks.tasks(batch.id)
    assert all(t.status == TaskStatus.SUCCEED for t in tasks)
    observations = sum(t.polls for t in tasks)
    by_route = counters["requests_by_route"]
    queries = by_route.get("get", 0) + by_route.get("list", 0)
    assert by_route.get("list", 0) > 0
    assert observations >= 10 * queries, (observations, by_route)
    report = monitor.store.reports.report(batch.id)
    assert report.learned_via.get("sweep", 0) > report.learned_via.get("poll", 0)
