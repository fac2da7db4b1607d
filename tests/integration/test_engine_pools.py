"""Pools end to end: the engine over loopback HTTP to the simulator, per-pool counts.

Kling 3.0 video, Kling 2.6 video and images of ``n = 4`` go to pools of 3, 3 and 8
(the simulator's video and image slots); klingmon is told those sizes and sends
them side by side, never over a pool (the simulator's own record), with no 1303.
A pool klingmon is told too big learns its size from the 1303s of that pool alone.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from newgen_support import newgen_monitor

from klingmon.api import GenericRequest
from klingmon.domain import TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from pathlib import Path

    from klingmon.engine import Engine
    from klingmon.store import TaskRow

V3 = "/text-to-video/kling-3.0"
V26 = "/text-to-video/kling-2.6"
IMG = "/image-generation/kling-3.0"
SIZES = {"kling-3.0/video": 3, "kling-2.6/video": 3, "kling-3.0/image": 8}


def batch(rounds: int) -> list[GenericRequest]:
    out: list[GenericRequest] = []
    for i in range(rounds):
        out += [
            GenericRequest(task_path=V3, payload={"prompt": f"a heron {i}"}),
            GenericRequest(task_path=V26, payload={"prompt": f"a crane {i}"}),
            GenericRequest(task_path=IMG, payload={"prompt": f"a poster {i}", "n": 4}),
        ]
    return out


def _config() -> SimConfig:
    return SimConfig(
        admin=True,
        seed=5,
        time_scale=1000.0,
        video_slots=3,
        image_slots=8,
        faults=Faults(fail_rate=0.0),
    )


async def _run(
    tmp_path: Path, pools: dict[str, int], rounds: int
) -> tuple[dict[str, Any], list[TaskRow], Engine]:
    with SimServer(_config()) as server:
        monitor = newgen_monitor(
            server.url,
            server.sim,
            tmp_path / "k.db",
            tmp_path / "out",
            slots=20,
            pools=pools,
        )
        stored = monitor.submit(batch(rounds), batch="pools")
        await asyncio.wait_for(monitor.run(batch=stored.id), timeout=50)
        engine = monitor.engine()
        await monitor.aclose()
        counters = server.sim.counters()
    return counters, monitor.store.tasks.tasks(stored.id), engine


async def test_mixed_pools_run_side_by_side_never_over_a_pool(tmp_path: Path):
    counters, tasks, _ = await _run(tmp_path, SIZES, rounds=8)
    assert {t.status for t in tasks} == {TaskStatus.SUCCEED}
    assert {t.pool: t.slots for t in tasks} == {
        "kling-3.0/video": 1,
        "kling-2.6/video": 1,
        "kling-3.0/image": 4,
    }
    assert counters["answers_1303"] == 0
    assert set(counters["creates_per_external_id"].values()) == {1}
    # Each pool filled to its size (in slots), none over: side by side.
    assert counters["max_in_flight_per_pool"] == SIZES


async def test_a_pool_told_too_big_learns_from_its_own_1303s(tmp_path: Path):
    """Told 6 slots of 2.6 video where Kling has 3: only that pool shrinks."""
    told = {**SIZES, "kling-2.6/video": 6}
    counters, tasks, engine = await _run(tmp_path, told, rounds=8)
    assert {t.status for t in tasks} == {TaskStatus.SUCCEED}
    refused = counters["answers_1303_per_pool"]
    assert set(refused) == {"kling-2.6/video"}
    assert counters["max_in_flight_per_pool"] == SIZES
    limits = engine.governor.pools
    assert limits.limit("kling-3.0/video") == 3
    assert limits.limit("kling-3.0/image") == 8
    # Shrunk; 8 finishes give back at most 2 (one per three): never its 6 again.
    assert limits.limit("kling-2.6/video") < 6
