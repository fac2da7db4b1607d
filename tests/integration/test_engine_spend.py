"""Spend control through the engine, on one virtual clock: quotes that learn,
approval before anything is sent, budgets that pause a batch."""

from __future__ import annotations

import asyncio

import pytest
from engine_support import virtual_monitor

from klingmon.api import Text2VideoRequest
from klingmon.domain import BatchState
from klingmon.errors import UsageError
from klingmon.policy import PriceSource
from klingmon.sim import Faults, PriceTable, SimConfig, Simulator
from klingmon.testing import VirtualClock


def _mixed(n: int) -> list[Text2VideoRequest]:
    """Half kling-v1-6 std 5 s (shipped: 2 units), half kling-v2-6 (none shipped)."""
    return [
        Text2VideoRequest(
            prompt=f"clip {i}", model_name="kling-v1-6" if i % 2 else "kling-v2-6"
        )
        for i in range(n)
    ]


def _charged(sim: Simulator, externals: set[str]) -> float:
    charges = sim.counters()["charges_per_external_id"]
    return sum(v for k, v in charges.items() if k in externals)


async def test_a_second_quote_is_within_one_percent_of_the_charges(tmp_path):
    """Cold: the shipped figure, labelled so, or unknown; warm: learned, within 1%."""
    clock = VirtualClock()
    # The account charges kling-v1-6 2.2 a clip, not the 2 of the shipped table.
    prices = PriceTable(units={"kling-v1-6": 2.2})
    sim = Simulator(
        SimConfig(seed=4, prices=prices, faults=Faults(fail_rate=0.1)), clock=clock
    )
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock)
    cold = monitor.quote(_mixed(20))
    by_model = {line.key[1]: line for line in cold.lines}
    assert by_model["kling-v1-6"].source is PriceSource.SHIPPED
    assert by_model["kling-v1-6"].units_each == 2.0
    assert by_model["kling-v2-6"].source is PriceSource.UNKNOWN
    assert cold.unknown_tasks == 10
    first = monitor.submit(_mixed(20), batch="first")
    await asyncio.wait_for(monitor.run(batch=first.id), timeout=30)

    warm = monitor.quote(_mixed(40))
    assert {line.source for line in warm.lines} == {PriceSource.LEARNED}
    second = monitor.submit(_mixed(40), batch="second", allow_repeats=True)
    await asyncio.wait_for(monitor.run(batch=second.id), timeout=30)
    tasks = monitor.store.tasks.tasks(second.id)
    succeeded = {t.external_task_id for t in tasks if t.status == "succeed"}
    expected = sum(t.quoted_units or 0 for t in tasks if t.status == "succeed")
    assert expected == pytest.approx(_charged(sim, succeeded), rel=0.01)
    assert warm.units == pytest.approx(sum(t.quoted_units or 0 for t in tasks))
    await monitor.aclose()


async def test_a_held_batch_sends_nothing_until_approved(tmp_path):
    """require_approval: the run ends at once, no create is sent; approve sends."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=2, faults=Faults(fail_rate=0.0)), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock)
    monitor.require_approval = True
    held = monitor.submit([Text2VideoRequest(prompt=f"p{i}") for i in range(6)])
    assert held.state == BatchState.AWAITING_APPROVAL
    assert held.quote is not None
    assert held.quote["units"] == 6.0
    await asyncio.wait_for(monitor.run(batch=held.id), timeout=10)
    await asyncio.wait_for(monitor.run(), timeout=10)  # nor does a run of everything
    assert sim.counters()["requests_by_route"].get("create", 0) == 0
    with pytest.raises(UsageError, match="awaiting approval"):
        monitor.resume(held.id)
    assert monitor.approve(held.id).state is None
    await asyncio.wait_for(monitor.run(batch=held.id), timeout=30)
    assert sim.counters()["requests_by_route"]["create"] == 6
    assert monitor.done(held.id)
    with pytest.raises(UsageError, match="not awaiting approval"):
        monitor.approve(held.id)
    await monitor.aclose()


async def test_a_budget_pauses_the_batch_and_resume_finishes_it(tmp_path):
    """A 5-unit cap on 12 one-unit tasks: at most 5 charged, paused, then resumed."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=6, faults=Faults(fail_rate=0.0)), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock, slots=3)
    events: list[str] = []
    monitor.on_budget(lambda e: events.append(e.event.kind))
    batch = monitor.submit(
        [Text2VideoRequest(prompt=f"p{i}") for i in range(12)], max_units=5
    )
    await asyncio.wait_for(monitor.run(batch=batch.id), timeout=30)
    assert sim.counters()["units_committed"] == 5
    row = monitor.store.tasks.batch(batch.id)
    assert row is not None
    assert row.state == BatchState.PAUSED_BUDGET
    assert "budget" in events
    monitor.resume(batch.id, max_units=20)
    await asyncio.wait_for(monitor.run(batch=batch.id), timeout=30)
    assert sim.counters()["units_committed"] == 12
    assert monitor.done(batch.id)
    assert monitor.store.spend.summary(batch.id).charged == 12
    assert monitor.store.spend.by_batch()[batch.id] == (12.0, 12.0, 12.0)
    await monitor.aclose()


async def test_a_repeat_of_a_success_is_linked_and_not_paid_again(tmp_path):
    """Same endpoint and body as a success: stored cancelled, linked, never sent."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=8, faults=Faults(fail_rate=0.0)), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock)
    first = monitor.submit(
        [Text2VideoRequest(prompt="a fox"), Text2VideoRequest(prompt="a cat")]
    )
    await asyncio.wait_for(monitor.run(batch=first.id), timeout=30)
    earlier = {t.prompt: t.id for t in monitor.store.tasks.tasks(first.id)}
    again = monitor.submit(
        [Text2VideoRequest(prompt="a fox"), Text2VideoRequest(prompt="a dog")]
    )
    await asyncio.wait_for(monitor.run(batch=again.id), timeout=30)
    fox, dog = monitor.store.tasks.tasks(again.id)
    assert (fox.status, fox.repeat_of) == ("cancelled", earlier["a fox"])
    assert (dog.status, dog.repeat_of) == ("succeed", None)
    assert sim.counters()["requests_by_route"]["create"] == 3
    assert again.quote is not None
    assert again.quote["tasks"] == 1
    forced = monitor.submit([Text2VideoRequest(prompt="a fox")], allow_repeats=True)
    await asyncio.wait_for(monitor.run(batch=forced.id), timeout=30)
    assert sim.counters()["requests_by_route"]["create"] == 4
    await monitor.aclose()
