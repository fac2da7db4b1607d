"""Pools end to end: the engine over loopback HTTP to the simulator, per-pool counts.

Kling 3.0 video, Kling 2.6 video and images of ``n = 4`` go to pools of 3, 3 and 8
(the simulator's video and image slots); klingmon is told those sizes and sends
them side by side, never over a pool (the simulator's own record), with no 1303.
A pool klingmon is told too big learns its size from the 1303s of that pool alone.

The simulator's clock is held until the pools have filled (or 1303s came), so
no task finishes before klingmon has sent all it would: on a loaded machine a
task of the fast simulator could otherwise end before the next create went out.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from newgen_support import newgen_monitor

from klingmon._clock import SystemClock
from klingmon.api import GenericRequest
from klingmon.domain import TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from collections.abc import Callable
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


class HeldClock(SystemClock):
    """The real time, except that it stands still until :meth:`release`.

    Held for at most a few seconds: the client's JWTs are valid from 5 s before
    they were made, so a longer hold would have the simulator refuse them.
    """

    def __init__(self) -> None:
        self._held_at: float | None = time.time()

    def now(self) -> float:
        held_at = self._held_at
        return time.time() if held_at is None else held_at

    def release(self) -> None:
        self._held_at = None


async def _release_when(
    clock: HeldClock, done: Callable[[], bool], *, within: float = 4.0
) -> None:
    """Release ``clock`` once ``done()``, or after ``within`` seconds regardless
    (then the test's own assertions say what did not happen)."""
    deadline = time.monotonic() + within
    while not done() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    clock.release()


async def _run(
    tmp_path: Path,
    pools: dict[str, int],
    rounds: int,
    *,
    filled: Callable[[dict[str, Any]], bool],
) -> tuple[dict[str, Any], list[TaskRow], Engine]:
    clock = HeldClock()
    with SimServer(_config(), clock) as server:
        monitor = newgen_monitor(
            server.url,
            server.sim,
            tmp_path / "k.db",
            tmp_path / "out",
            slots=20,
            pools=pools,
        )
        stored = monitor.submit(batch(rounds), batch="pools")
        release = asyncio.create_task(
            _release_when(clock, lambda: filled(server.sim.counters()))
        )
        await asyncio.wait_for(monitor.run(batch=stored.id), timeout=50)
        await release
        engine = monitor.engine()
        await monitor.aclose()
        counters = server.sim.counters()
    return counters, monitor.store.tasks.tasks(stored.id), engine


async def test_mixed_pools_run_side_by_side_never_over_a_pool(tmp_path: Path):
    counters, tasks, _ = await _run(
        tmp_path,
        SIZES,
        rounds=8,
        filled=lambda c: c["max_in_flight_per_pool"] == SIZES,
    )
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
    counters, tasks, engine = await _run(
        tmp_path,
        told,
        rounds=8,
        filled=lambda c: "kling-2.6/video" in c["answers_1303_per_pool"],
    )
    assert {t.status for t in tasks} == {TaskStatus.SUCCEED}
    refused = counters["answers_1303_per_pool"]
    assert set(refused) == {"kling-2.6/video"}
    assert counters["max_in_flight_per_pool"] == SIZES
    limits = engine.governor.pools
    assert limits.limit("kling-3.0/video") == 3
    assert limits.limit("kling-3.0/image") == 8
    # Shrunk; 8 finishes give back at most 2 (one per three): never its 6 again.
    assert limits.limit("kling-2.6/video") < 6
