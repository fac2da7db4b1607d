"""The account's packs: ``GET /account/costs`` asked at most once a second and shared,
kept in the store for other processes, refreshed by the engine while work runs."""

from __future__ import annotations

import asyncio
import logging

import pytest
from engine_support import virtual_monitor

from klingmon.api import AsyncKlingClient, Text2VideoRequest
from klingmon.engine import ACCOUNT_REFRESH, Account, Monitor, stored_figures
from klingmon.errors import KlingmonError
from klingmon.sim import Faults, ResourcePack, SimConfig, Simulator
from klingmon.store import Store
from klingmon.testing import SimServer, VirtualClock


def _costs_asked(sim: Simulator) -> int:
    return int(sim.counters()["requests_by_route"].get("costs", 0))


def _loopback_client(server: SimServer, clock: VirtualClock) -> AsyncKlingClient:
    return AsyncKlingClient(
        base_url=server.url,
        access_key=server.sim.config.access_key,
        secret_key=server.sim.config.secret_key,
        clock=clock,
    )


async def test_callers_within_a_second_share_one_answer(tmp_path):
    """Two monitors of one process, one Account: at most one request a second."""
    clock = VirtualClock()
    with SimServer(SimConfig(admin=True), clock) as server:
        store = Store.open(str(tmp_path / "k.db"))
        account = Account(clock=clock, store=store)
        clients = [_loopback_client(server, clock) for _ in range(2)]
        monitors = [
            Monitor(store=store, client=c, clock=clock, account=account)
            for c in clients
        ]
        answers = await asyncio.gather(*(m.account_costs() for m in monitors * 3))
        assert _costs_asked(server.sim) == 1
        assert len({id(a) for a in answers}) == 1
        clock.advance(0.9)
        await monitors[1].account_costs()
        assert _costs_asked(server.sim) == 1
        clock.advance(0.1)
        await monitors[0].account_costs()
        assert _costs_asked(server.sim) == 2
        for client in clients:
            await client.aclose()
        store.close()


async def test_the_last_answer_is_kept_for_another_process(tmp_path):
    """Saved in the store's meta with its time: a fresh Account (a ``status``
    elsewhere) reads the packs without asking Kling."""
    clock = VirtualClock()
    packs = (ResourcePack(name="Video 500", total=500.0, pack_id="9001"),)
    with SimServer(SimConfig(admin=True, packs=packs), clock) as server:
        db = str(tmp_path / "k.db")
        client = _loopback_client(server, clock)
        async with Monitor(store=Store.open(db), client=client, clock=clock) as m:
            assert m.account.latest() is None
            await m.account_costs()
        elsewhere = Store.open(db)
        figures = Account(clock=clock, store=elsewhere).latest()
        assert figures is not None
        assert figures == stored_figures(elsewhere)
        assert figures.fetched_ms == round(clock.now() * 1000)
        [pack] = figures.packs
        assert (pack.label, pack.remaining, pack.status) == (
            "Video 500 (9001)",
            500.0,
            "online",
        )
        assert _costs_asked(server.sim) == 1
        elsewhere.close()


# ~50 virtual minutes of rounds through a file store: 15-20 s of CPU alone, up to
# three times that on a loaded 2-core CI machine.
@pytest.mark.timeout(240)
async def test_the_engine_refreshes_while_work_runs_and_never_when_idle(tmp_path):
    """A forever run with nothing to do asks never; a run of ~50 virtual minutes
    asks at its start and every ACCOUNT_REFRESH, the last after charges."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=3, faults=Faults(fail_rate=0.0)), clock=clock)
    idle = virtual_monitor(sim, tmp_path / "idle.db", clock, slots=2)
    start = clock.now()
    running = asyncio.ensure_future(idle.run(forever=True))
    while clock.now() < start + 1.2 * ACCOUNT_REFRESH:
        await asyncio.sleep(0)
    idle.stop()
    await asyncio.wait_for(running, timeout=10)
    await idle.aclose()
    assert _costs_asked(sim) == 0

    monitor = virtual_monitor(sim, tmp_path / "k.db", clock, slots=1)
    batch = monitor.submit([Text2VideoRequest(prompt=f"p{i}") for i in range(10)])
    began = clock.now()
    await asyncio.wait_for(monitor.run(batch=batch.id), timeout=200)
    ran = clock.now() - began
    assert ran > ACCOUNT_REFRESH  # long enough to need a refresh after the first
    # One at the start, then one per ACCOUNT_REFRESH of work.
    assert _costs_asked(sim) == 1 + ran // ACCOUNT_REFRESH
    figures = stored_figures(monitor.store)
    assert figures is not None
    assert figures.fetched_ms > round(began * 1000)
    video = next(p for p in figures.packs if p.name.startswith("Video"))
    assert video.remaining is not None
    assert video.total is not None
    assert video.remaining < video.total  # the charges of the run show
    await monitor.aclose()


async def test_a_failing_refresh_is_logged_once_and_never_fatal(tmp_path, caplog):
    """Every /account/costs answers 500: the batch still finishes, one warning."""
    clock = VirtualClock()
    sim = Simulator(SimConfig(seed=5, faults=Faults(fail_rate=0.0)), clock=clock)
    sim.script("costs", status=500, times=1000)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock, slots=2)
    batch = monitor.submit([Text2VideoRequest(prompt=f"p{i}") for i in range(12)])
    with caplog.at_level(logging.INFO, logger="klingmon.engine._account"):
        await asyncio.wait_for(monitor.run(batch=batch.id), timeout=60)
    assert monitor.done(batch.id)
    failed = [r for r in caplog.records if r.getMessage() == "account.refresh_failed"]
    assert len(failed) == 1
    # Tried again later (every ACCOUNT_RETRY), not only once.
    assert _costs_asked(sim) > 2
    assert stored_figures(monitor.store) is None
    await monitor.aclose()


async def test_after_a_failure_the_next_request_waits_out_the_second(tmp_path):
    """A refused request leaves no answer to share: the next caller waits until a
    second has passed since it was sent, then asks."""
    clock = VirtualClock()
    with SimServer(SimConfig(admin=True), clock) as server:
        server.sim.script("costs", status=400, code=1201)
        client = _loopback_client(server, clock)
        account = Account(clock=clock)
        sent = clock.now()
        with pytest.raises(KlingmonError):
            await account.costs(client)
        assert account.latest() is None
        await account.costs(client)
        assert clock.now() >= sent + 1.0
        assert _costs_asked(server.sim) == 2
        assert account.latest() is not None
        await client.aclose()
