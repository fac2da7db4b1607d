"""1201 on a create: adopted when its external id finds a task, else rejected."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine_support import virtual_monitor

from klingmon.api import Text2VideoRequest
from klingmon.domain import TaskStatus
from klingmon.sim import Faults, SimConfig, Simulator
from klingmon.testing import VirtualClock

if TYPE_CHECKING:
    from klingmon.hooks import HookEvent

T2V = "/v1/videos/text2video"


async def test_a_duplicate_external_id_is_adopted_not_rejected(tmp_path):
    """Kling already holds the id (a restored store): watched to its end, not paid."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=5, faults=Faults(fail_rate=0.0)), clock=clock)
    # The create an older copy of the store no longer remembers sending.
    first = sim.create(T2V, {"prompt": "one", "external_task_id": "mine-1"}, "")
    assert first.status == 200
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock)
    succeeded: list[HookEvent] = []
    monitor.on_succeed(succeeded.append)
    batch = monitor.submit([Text2VideoRequest(prompt="one", external_task_id="mine-1")])
    await asyncio.wait_for(monitor.run(batch=batch.id), timeout=20)
    [task] = monitor.store.tasks.tasks(batch.id)
    counters = sim.counters()
    assert task.status == TaskStatus.SUCCEED
    assert [e.task.id for e in succeeded] == [task.id]
    assert len(counters["tasks"]) == 1  # nothing created, nothing billed twice
    assert counters["duplicate_creates_per_external_id"] == {"mine-1": 1}
    assert len(monitor.store.downloads.download_rows(task_id=task.id)) == 1
    await monitor.aclose()


async def test_a_1201_with_no_such_task_is_rejected_after_one_lookup(tmp_path):
    """A bad parameter is still a refusal: one lookup finds nothing, then rejected."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=6), clock=clock)
    sim.script("create", status=400, code=1201, times=1)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock)
    batch = monitor.submit([Text2VideoRequest(prompt="one")])
    await asyncio.wait_for(monitor.run(batch=batch.id), timeout=20)
    [task] = monitor.store.tasks.tasks(batch.id)
    routes = sim.counters()["requests_by_route"]
    assert task.status == TaskStatus.REJECTED
    assert task.last_error is not None
    assert task.last_error.startswith("1201")
    assert (routes.get("create"), routes.get("get")) == (1, 1)
    await monitor.aclose()
