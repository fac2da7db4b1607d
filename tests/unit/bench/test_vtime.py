"""The virtual-time loop and a smoke run of the benchmark harness."""

from __future__ import annotations

import asyncio

from bench.harness import run_contender
from bench.vtime import DEFAULT_EPOCH, LoopClock, VirtualTimeLoop, run_virtual
from bench.workloads import Workload, ideal_makespan, percentile


def test_concurrent_sleepers_wake_in_deadline_order_at_their_deadlines() -> None:
    """Many coroutines sleeping at once each wake exactly at their own deadline."""

    async def main() -> list[tuple[int, float]]:
        loop = asyncio.get_running_loop()
        woke: list[tuple[int, float]] = []

        async def sleeper(n: int, seconds: float) -> None:
            await asyncio.sleep(seconds)
            woke.append((n, loop.time()))

        await asyncio.gather(*(sleeper(n, 3600.0 - 100 * n) for n in range(5)))
        return woke

    assert run_virtual(main()) == [
        (4, 3200.0),
        (3, 3300.0),
        (2, 3400.0),
        (1, 3500.0),
        (0, 3600.0),
    ]


def test_loop_clock_reads_epoch_plus_virtual_time_and_timeouts_fire() -> None:
    """LoopClock follows the loop; wait_for times out in virtual, not real, time."""

    async def main() -> tuple[float, float, bool]:
        clock = LoopClock(asyncio.get_running_loop())
        start = clock.now()
        await clock.asleep(86_400)
        try:
            await asyncio.wait_for(asyncio.Event().wait(), timeout=30)
        except TimeoutError:
            timed_out = True
        else:
            timed_out = False
        return start, clock.now(), timed_out

    start, end, timed_out = run_virtual(main())
    assert start == DEFAULT_EPOCH
    assert end == DEFAULT_EPOCH + 86_430
    assert timed_out


def test_work_between_timers_takes_no_virtual_time() -> None:
    """A burst of ready callbacks runs at one virtual instant."""
    loop = VirtualTimeLoop()
    try:

        async def main() -> tuple[float, float]:
            before = loop.time()
            for _ in range(1000):
                await asyncio.sleep(0)
            return before, loop.time()

        before, after = loop.run_until_complete(main())
    finally:
        loop.close()
    assert before == after == 0.0


def test_ideal_makespan_is_the_greedy_schedule_and_a_lower_bound() -> None:
    """Greedy list scheduling in order, and max(longest, total / slots)."""
    assert ideal_makespan([10, 10, 10, 10], 2) == (20, 20)
    assert ideal_makespan([30, 10, 10, 10], 2) == (30, 30)
    assert ideal_makespan([10, 10, 30], 2) == (40, 30)
    assert percentile([1, 2, 3, 4], 50) == 2
    assert percentile([], 99) is None


def test_smoke_run_of_every_contender_on_twenty_tasks() -> None:
    """Seed (a) crashes on the first 1303; (b) and klingmon finish and are measured."""
    workload = Workload("smoke", 3, 20, seed=5)
    seed = run_contender(workload, "seed", "polling", wall_budget=60)
    assert not seed["finished"]
    assert seed["answers_1303"] == 1
    assert seed["created_in_kling"] == 3
    fixed = run_contender(workload, "seed-fixed", "polling", wall_budget=60)
    polling = run_contender(workload, "klingmon", "polling", wall_budget=60)
    callback = run_contender(workload, "klingmon", "callback", wall_budget=60)
    for run in (fixed, polling, callback):
        assert run["finished"], run["why_not"]
        assert run["detected"] == 20
        assert run["answers_1303"] == 0
        assert run["utilisation"] > 0
        assert run["creates_per_task"] == 1.0
        assert run["lag_p99_s"] is not None
        assert run["lag_p99_s"] >= 0
    assert callback["callbacks"]["sent"] > 0
