"""The schedule on the virtual clock: a batch's "done" follows its last finish, and
batches that arrive over time or mix Kling 3.0 kinds run to the end."""

from __future__ import annotations

from bench.harness import run_contender
from bench.workloads import QUICK, Workload, ideal_makespan

from klingmon.policy import SchedulePolicy


def test_the_batch_done_follows_its_last_finish_within_done_lag() -> None:
    """This batch ends on a task of the long tail (397 s, 4x the median, finishing
    five minutes after the one before it): it backed off while work waited; once
    nothing waits it is polled within done_lag, so the batch is done that soon."""
    figures = run_contender(Workload("tail", 10, 40, seed=1), "klingmon", "polling")
    assert figures["finished"]
    assert figures["done_lag_max_s"] <= SchedulePolicy().done_lag
    assert figures["lag_max_s"] <= SchedulePolicy().target_lag


def test_batches_arriving_over_time_and_a_kling3_mix_run_to_the_end() -> None:
    arriving = Workload("a", 6, 18, arrivals=3, arrival_gap_s=300.0)
    mix = Workload("m", 6, 18, mix=True)
    assert [len(b) for b in arriving.batches()] == [6, 6, 6]
    assert arriving.ready_at()[-1] == 600.0
    for workload in (arriving, mix):
        figures = run_contender(workload, "klingmon", "polling")
        assert figures["finished"], figures["why_not"]
        assert figures["created_in_kling"] == workload.tasks
        assert figures["done_lag_max_s"] <= SchedulePolicy().done_lag


def test_the_mix_draws_longer_and_wider_than_the_seed() -> None:
    kinds = {(b["mode"], b["duration"]) for b in QUICK[2].bodies()}
    assert kinds == {(m, d) for m in ("std", "pro") for d in ("5", "10", "15")}
    new = QUICK[2].on("new").bodies()[5]
    assert new["settings"] == {"duration": 15, "resolution": "1080p"}


def test_the_ideal_makespan_waits_for_a_batch_to_arrive() -> None:
    """Two tasks of 10 s on one slot, the second arriving at 100 s: 110 s, not 20."""
    assert ideal_makespan([10.0, 10.0], 1)[0] == 20.0
    assert ideal_makespan([10.0, 10.0], 1, ready=[0.0, 100.0])[0] == 110.0
    assert Workload("x", 1, 4, arrivals=2, arrival_gap_s=50.0).ready_at() == [
        0.0,
        0.0,
        50.0,
        50.0,
    ]
