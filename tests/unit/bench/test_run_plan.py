"""``bench.run``: rows and curve points in one pool; 500-slot rows left to --full."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest
from bench import report
from bench.harness import ENGINE_SETTINGS
from bench.run import CONTENDERS, _job, curve_plan, estimate, run_virtual
from bench.workloads import WORKLOADS, Workload, full_only

from klingmon.policy import SchedulePolicy

if TYPE_CHECKING:
    from collections.abc import Iterator

TINY = Workload("2 slots / 6 tasks", 2, 6, seed=3)


@pytest.fixture(autouse=True)
def _logging_back() -> Iterator[None]:
    """``bench.run._job`` silences logging process-wide (a bench worker's whole
    life); tests after these in the same process must hear warnings again."""
    yield
    logging.disable(logging.NOTSET)


def test_a_row_after_a_curve_point_runs_on_the_default_schedule() -> None:
    """A pool worker reuses its process: a curve point's ``request_cost`` must not
    leak into the next row it runs (the figures would silently change)."""
    alone = _job(TINY, "klingmon", "polling", 60)["figures"]
    _job(TINY, "klingmon", "polling", 60, request_cost=0.3)
    assert ENGINE_SETTINGS["schedule"] == SchedulePolicy(request_cost=0.3)
    after = _job(TINY, "klingmon", "polling", 60)["figures"]
    assert "schedule" not in ENGINE_SETTINGS
    wall = {"wall_s", "job_wall_s"}
    assert {k: v for k, v in after.items() if k not in wall} == {
        k: v for k, v in alone.items() if k not in wall
    }


def test_rows_and_points_come_back_in_table_order_with_skipped_rows_saying_why() -> (
    None
):
    skipped = Workload("3 slots / 9 tasks", 500, 9, seed=3)
    virtual, curve = run_virtual(
        (TINY, skipped), 2, 60, ("legacy",), curve=(TINY,), full=False
    )
    legacy = [c for c in CONTENDERS if c[2] == "legacy"]
    assert [(r["workload"], r["contender"], r["mode"]) for r in virtual] == [
        (w.name, c, m) for w in (TINY, skipped) for c, m, _ in legacy
    ]
    assert [r["request_cost"] for r in curve] == [0.3, 3.0]
    left = [r["figures"] for r in virtual if r["workload"] == skipped.name]
    assert all(f["not_run"] and "make bench-full" in f["why_not"] for f in left)
    done = [r["figures"] for r in virtual if r["workload"] == TINY.name]
    assert [f["finished"] for f in done] == [False, True, True, True]


def test_a_row_left_to_bench_full_shows_its_targets_as_not_measured() -> None:
    """The issue: where a target is not met the table says so; a row not run in
    make bench must not just vanish from the targets."""
    skipped = WORKLOADS[4]
    virtual, _ = run_virtual((skipped,), 1, 60, full=False)
    found = report.targets({"virtual": virtual})
    names = [t["target"] for t in found]
    assert any(n.startswith(f"{skipped.name}, polling") for n in names)
    assert any(n.startswith(f"{skipped.name}, callbacks") for n in names)
    assert any(n.startswith(f"{skipped.name}, new generation") for n in names)
    assert all(t["met"] is None and "make bench-full" in t["figure"] for t in found)


def test_make_bench_keeps_every_row_of_5_20_and_50_slots() -> None:
    """Left to bench-full: the 500-slot workload, the Kling 3.0 mix and the arriving
    batches; kept: every contender, mode and generation of the plain workloads."""
    kept = [
        (w, c, m)
        for w in WORKLOADS
        for c, m, g in CONTENDERS
        if not full_only(w.on(g), c, m)
    ]
    assert {(w.slots, w.tasks) for w, _, _ in kept} == {
        (5, 40),
        (5, 200),
        (20, 200),
        (50, 2_000),
    }
    assert len(kept) == 4 * len(CONTENDERS)


def test_the_costliest_runs_are_started_first() -> None:
    """Longest processing time first: the big rows do not end the run alone."""
    jobs = [(w, "klingmon", "polling", None) for w in WORKLOADS]
    jobs += curve_plan(WORKLOADS[:1])
    costs = sorted(jobs, key=lambda j: -estimate(j))
    assert costs[0][0].tasks == max(w.tasks for w in WORKLOADS)
    assert estimate((TINY, "seed", "polling", None)) == 0.0
