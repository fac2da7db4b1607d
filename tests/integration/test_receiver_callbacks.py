"""Callbacks from the simulator over loopback: detection, faults, receiver restarts."""

from __future__ import annotations

import asyncio

from receiver_support import PortServer, attach, free_port, rig

from klingmon.api import Text2VideoRequest
from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer
from klingmon.web import ReceiverSettings

WHSEC = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="


def _prompts(n: int) -> list[Text2VideoRequest]:
    return [Text2VideoRequest(prompt=f"clip {i}") for i in range(n)]


def _truth(counters: dict) -> dict[str, str]:
    return {tid: t["status"] for tid, t in counters["tasks"].items()}


async def _run(config: SimConfig, tmp_path, n: int, **kw):
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with SimServer(config) as sim:
        r = rig(sim, tmp_path / "k.db", public, **kw)
        with PortServer(r.app, port):
            attach(r)
            batch = r.monitor.submit(_prompts(n), batch="cb")
            await asyncio.wait_for(r.monitor.run(batch=batch.id), timeout=40)
        await r.monitor.aclose()
        counters = sim.sim.counters()
    tasks = r.receiver_store.tasks.tasks(batch.id)
    report = r.receiver_store.reports.report(batch.id)
    r.receiver_store.close()
    return tasks, counters, report


async def test_callbacks_detect_with_only_safety_and_confirmation_polls(tmp_path):
    """Clean callbacks: final statuses match Kling; about one query per task."""
    # 250x, not 1000x: a phase then lasts long enough in real time that a callback
    # still beats the safety-net poll when the suite's other workers load the CPU.
    config = SimConfig(
        admin=True, seed=11, time_scale=250.0, faults=Faults(fail_rate=0.1)
    )
    tasks, counters, report = await _run(config, tmp_path, 40)
    assert {t.task_id: t.status.value for t in tasks} == _truth(counters)
    by_route = counters["requests_by_route"]
    queries = by_route.get("get", 0) + by_route.get("list", 0)
    assert counters["callbacks"]["sent"] >= len(tasks)
    # Processing came by callback, terminal statuses as hints confirmed by a query:
    # most of them (a safety-net poll can still win a race with a callback).
    via = report.statuses_via
    assert via.get("callback_hint", 0) >= 0.7 * len(tasks)
    # A processing callback that beats the create's answer (common at 1000x) is
    # only a hint too: a task_id is learned from Kling's own answers, never a
    # callback's, so the hints outnumber the tasks by those.
    processing = via.get("callback", 0) + via.get("callback_hint", 0) - len(tasks)
    assert processing >= 0.7 * len(tasks)
    # One confirmation per task (a GET, or a list page for several), plus at most
    # a safety-net poll for tasks submitted before callbacks were seen flowing.
    assert queries <= 1.5 * len(tasks), by_route


async def test_signed_callbacks_need_no_confirmation(tmp_path):
    """Standard-Webhooks-signed terminal callbacks are applied without a GET."""
    config = SimConfig(
        admin=True,
        seed=12,
        time_scale=250.0,  # as above: callbacks, not polls, under a loaded CPU
        webhook_secret=WHSEC,
        faults=Faults(fail_rate=0.1),
    )
    tasks, counters, report = await _run(
        config, tmp_path, 30, settings=ReceiverSettings(webhook_secret=WHSEC)
    )
    assert {t.task_id: t.status.value for t in tasks} == _truth(counters)
    by_route = counters["requests_by_route"]
    queries = by_route.get("get", 0) + by_route.get("list", 0)
    assert report.learned_via.get("callback", 0) >= len(tasks) * 0.8
    assert report.statuses_via.get("callback", 0) >= 1.6 * len(tasks)
    assert queries <= 0.5 * len(tasks), by_route


async def test_dropped_duplicated_delayed_reordered_callbacks_end_correct(tmp_path):
    """Faulty callback delivery still ends every task in Kling's final status."""
    faults = Faults(
        fail_rate=0.1,
        callback_drop_rate=0.3,
        callback_duplicate_rate=0.3,
        callback_delay=20.0,
        callback_reorder_rate=0.3,
    )
    config = SimConfig(admin=True, seed=13, time_scale=1000.0, faults=faults)
    tasks, counters, _ = await _run(config, tmp_path, 40)
    assert {t.task_id: t.status.value for t in tasks} == _truth(counters)
    assert counters["callbacks"]["dropped"] > 0


async def test_receiver_stopped_mid_batch_is_caught_up(tmp_path):
    """The receiver goes away mid-batch and comes back; every task ends correct."""
    config = SimConfig(
        admin=True, seed=14, time_scale=1000.0, faults=Faults(fail_rate=0.1)
    )
    port = free_port()
    with SimServer(config) as sim:
        r = rig(sim, tmp_path / "k.db", f"http://127.0.0.1:{port}")
        attach(r)
        batch = r.monitor.submit(_prompts(40), batch="restart")
        runner = asyncio.create_task(r.monitor.run(batch=batch.id))
        server = PortServer(r.app, port)
        server.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while sim.sim.counters()["callbacks"].get("sent", 0) < 10:
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        server.stop()  # callbacks now fail: the engine's safety net carries on
        while (
            sim.sim.counters()["callbacks"].get("failed", 0) < 5 and not runner.done()
        ):
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        server = PortServer(r.app, port)
        server.start()
        try:
            await asyncio.wait_for(runner, timeout=40)
        finally:
            server.stop()
        await r.monitor.aclose()
        counters = sim.sim.counters()
    tasks = r.receiver_store.tasks.tasks(batch.id)
    r.receiver_store.close()
    assert {t.task_id: t.status.value for t in tasks} == _truth(counters)
    assert counters["callbacks"]["failed"] >= 1
