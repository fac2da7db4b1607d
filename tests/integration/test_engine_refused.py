"""A key Kling refuses stops the run: nothing is sent, nothing is left half-sent."""

from __future__ import annotations

import asyncio

import pytest

from klingmon.api import AsyncKlingClient, Text2VideoRequest
from klingmon.domain import TaskStatus
from klingmon.engine import EngineSettings, Monitor
from klingmon.errors import KlingmonError
from klingmon.sim import SimConfig, Simulator
from klingmon.store import Store
from klingmon.testing import VirtualClock


async def test_tasks_not_sent_when_a_key_is_refused_are_queued_again(tmp_path):
    """Several tasks go out at once; the first create refused (401) stops the run.
    Those that had not been sent yet are back in the queue, not ``submitting``: a
    resume sends them plainly, without looking each up first."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=2), clock=clock)
    client = AsyncKlingClient(
        base_url="http://sim.test",
        access_key=sim.config.access_key,
        secret_key="not-the-secret",  # the refused one
        transport=sim.transport(),
        clock=clock,
    )
    # One request at a time: the others wait, marked ``submitting``, for their turn.
    settings = EngineSettings(slots=5, parallel_requests=1, seed=1)
    monitor = Monitor(
        store=Store.open(str(tmp_path / "k.db")),
        client=client,
        clock=clock,
        settings=settings,
    )
    batch = monitor.submit(
        [Text2VideoRequest(prompt=f"clip {i}") for i in range(5)], batch="keys"
    )
    with pytest.raises(KlingmonError):
        await asyncio.wait_for(monitor.run(batch=batch.id), timeout=30)
    statuses = {t.status for t in monitor.store.tasks.tasks(batch.id)}
    assert statuses == {TaskStatus.QUEUED}
    assert sim.counters()["creates_per_external_id"] == {}
