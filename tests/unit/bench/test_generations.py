"""The virtual-time workloads on both API generations; the new generation's targets."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from bench import report
from bench.compare import differences
from bench.harness import run_contender
from bench.run import CONTENDERS, plan
from bench.workloads import (
    LEGACY,
    NEW,
    WEBHOOK_SECRET,
    Workload,
    body,
    not_run,
    sim_config,
    summary,
    true_runs,
)

from klingmon.sim import Simulator
from klingmon.testing import VirtualClock

W = Workload("50 slots / 2,000 tasks", 50, 2_000)


def test_a_workload_on_the_new_generation_keeps_its_prompts_and_changes_its_path() -> (
    None
):
    """Same name, prompts, slots and seed; the new path and the new body shape."""
    new = W.on(NEW)
    assert new.generation == NEW
    assert W.generation == LEGACY
    assert (new.name, new.slots, new.tasks, new.seed) == (W.name, 50, 2_000, 7)
    assert new.prompts() == W.prompts()
    assert W.endpoint == "/v1/videos/text2video"
    assert new.endpoint == "/text-to-video/kling-3.0"
    assert (
        W.body("p")
        == body("p")
        == {
            "model_name": "kling-v2-master",
            "prompt": "p",
            "duration": "5",
        }
    )
    assert new.body("p") == {"prompt": "p", "settings": {"duration": 5}}
    assert (W.pool, new.pool) == ("kling-v2-master/video", "kling-3.0/video")
    with pytest.raises(ValueError, match="generation"):
        W.on("v3")  # type: ignore[arg-type]


def test_the_simulator_accepts_the_new_path_with_the_workload_slots_per_pool() -> None:
    """Legacy: the account as before; new: the model in new_models, its pool sized."""
    legacy, new = sim_config(W), sim_config(W.on(NEW), callback_drop_rate=0.05)
    assert legacy.webhook_secret is None
    assert "/text-to-video/kling-3.0" in new.new_models
    assert new.video_slots == 50
    assert new.webhook_secret == WEBHOOK_SECRET
    assert dataclasses.replace(
        new,
        new_models=legacy.new_models,
        video_slots=legacy.video_slots,
        webhook_secret=None,
        faults=legacy.faults,
    ) == dataclasses.replace(legacy)
    assert new.faults.callback_drop_rate == 0.05


def _lives(workload: Workload, n: int) -> list[tuple[str, int, int]]:
    """(outcome, ms submitted -> processing, ms processing -> end) of the first n."""
    clock = VirtualClock()
    sim = Simulator(sim_config(workload), clock=clock)
    for prompt in workload.prompts()[:n]:
        if workload.generation == NEW:
            answer = sim.create_new(
                workload.endpoint, workload.body(prompt), "http://x"
            )
        else:
            answer = sim.create(workload.endpoint, workload.body(prompt), "http://x")
        assert answer.status == 200
    out = []
    for info in sim.counters()["tasks"].values():
        times = [ms for _, ms in info["transitions"]]
        # Far enough ahead that every task has its whole life in the record.
        assert len(times) == 1
    clock.advance(10 * 86_400)
    for info in sim.counters()["tasks"].values():
        (_, created), (_, processing), (outcome, end) = info["transitions"]
        out.append((outcome, processing - created, end - processing))
    return out


def test_the_i_th_task_lives_exactly_as_long_on_both_generations() -> None:
    """The simulator draws the same durations and outcomes for the same workload."""
    workload = Workload("lives", 30, 30)
    legacy, new = _lives(workload, 30), _lives(workload.on(NEW), 30)
    assert legacy == new
    assert len({d for _, _, d in legacy}) == 30


def _counters(routes: dict[str, int], pools: dict[str, int]) -> dict[str, Any]:
    base = 1_779_955_200_000
    tasks = {
        str(i): {"transitions": [["submitted", base], ["succeed", base + 60_000]]}
        for i in range(10)
    }
    return {
        "tasks": tasks,
        "requests_by_route": routes,
        "answers_1303": 0,
        "answers_1302": 0,
        "max_in_flight": 0,
        "max_in_flight_per_pool": pools,
    }


def test_new_generation_queries_are_batched_gets_and_sweeps() -> None:
    """``GET /tasks`` counts as GETs, ``POST /tasks`` as list pages; its own pool."""
    workload = Workload("ten", 5, 10).on(NEW)
    counters = _counters(
        {"create": 10, "tasks_get": 3, "tasks_post": 2, "get": 0},
        {"kling-v2-master/video": 0, "kling-3.0/video": 5},
    )
    detected = {str(i): 1_779_955_200_000 + 61_000 for i in range(10)}
    f = summary(
        workload=workload,
        counters=counters,
        start=1_779_955_200.0,
        detected_ms=detected,
        done=True,
    )
    assert f["gets_per_task"] == 0.3
    assert f["list_pages_per_task"] == 0.2
    assert f["queries_per_task"] == 0.5
    assert f["requests"] == {
        "create": 10,
        "get": 0,
        "list": 0,
        "tasks_get": 3,
        "tasks_post": 2,
    }
    assert f["max_in_flight"] == 5
    assert f["lag_p99_s"] == 1.0
    legacy = summary(
        workload=Workload("ten", 5, 10),
        counters=counters,
        start=1_779_955_200.0,
        detected_ms=detected,
        done=True,
    )
    assert legacy["queries_per_task"] == 0.0
    assert set(legacy["requests"]) == {"create", "get", "list"}


def test_the_plan_has_new_generation_rows_for_klingmon_only() -> None:
    """Beside each legacy klingmon row a new one; legacy alone is the old plan."""
    workloads = (Workload("a", 5, 40), Workload("b", 20, 200))
    both = plan(workloads)
    legacy = plan(workloads, (LEGACY,))
    assert [(w.name, c, m) for w, c, m in legacy] == [
        (w.name, c, m)
        for w in workloads
        for c, m in (
            ("seed", "polling"),
            ("seed-fixed", "polling"),
            ("klingmon", "polling"),
            ("klingmon", "callback"),
        )
    ]
    new = [(w.name, c, m) for w, c, m in both if w.generation == NEW]
    assert new == [
        (w.name, "klingmon", m) for w in workloads for m in ("polling", "callback")
    ]
    assert len(both) == len(workloads) * len(CONTENDERS)


def test_a_baseline_on_the_new_generation_is_a_not_run_row() -> None:
    """The seed speaks only legacy: a row saying so, not an exception."""
    f = run_contender(Workload("x", 2, 4).on(NEW), "seed-fixed", "polling")
    assert f["not_run"] is True
    assert not f["finished"]
    assert f["why_not"].startswith("not run: seed-fixed speaks only")


def test_a_new_generation_run_either_runs_or_says_why_not() -> None:
    """On an engine that cannot yet submit new-generation tasks the row is "not
    run" with the reason; once it can, every task is created once in its pool."""
    workload = Workload("smoke new", 3, 12, seed=5).on(NEW)
    for mode in ("polling", "callback"):
        f = run_contender(workload, "klingmon", mode, wall_budget=60)
        if f["finished"]:
            assert f["detected"] == 12
            assert f["creates_per_task"] == 1.0
            assert f["max_in_flight"] <= 3
            assert f["requests"]["get"] == f["requests"]["list"] == 0
        else:
            assert f["why_not"], f
            assert f["why_not"].startswith("not run"), f["why_not"]
            assert f["not_run"] is True


def _row(
    workload: str, mode: str, generation: str, figures: dict[str, Any]
) -> dict[str, Any]:
    return {
        "workload": workload,
        "contender": "klingmon",
        "mode": mode,
        "generation": generation,
        "figures": figures,
    }


def _figures(**over: Any) -> dict[str, Any]:
    f = not_run(Workload("w", 50, 100), "x") | {
        "finished": True,
        "created_in_kling": 100,
        "detected": 100,
        "makespan_s": 100.0,
        "ideal_makespan_s": 98.0,
        "utilisation": 0.98,
        "creates_per_task": 1.0,
        "queries_per_task": 0.15,
        "lag_p50_s": 2.0,
        "lag_p95_s": 5.0,
        "lag_p99_s": 8.0,
        "why_not": None,
    }
    del f["not_run"]
    return f | over


def _targets(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in report.targets({"virtual": rows})}


def test_new_generation_polling_targets_compare_with_the_legacy_row() -> None:
    """≤ 0.2 queries/task; utilisation ≥ legacy's; p99 lag ≤ legacy's."""
    name = "50 slots / 2,000 tasks"
    legacy = _figures(queries_per_task=0.9, utilisation=0.97, lag_p99_s=9.0)
    good = _figures(queries_per_task=0.2, utilisation=0.97, lag_p99_s=9.0)
    bad = _figures(queries_per_task=0.21, utilisation=0.96, lag_p99_s=9.5)
    for new, met in ((good, True), (bad, False)):
        t = _targets(
            [_row(name, "polling", "legacy", legacy), _row(name, "polling", "new", new)]
        )
        prefix = f"{name}, new generation, polling: "
        assert t[prefix + "query requests/task"]["met"] is met
        assert t[prefix + "slot utilisation vs legacy"]["met"] is met
        assert t[prefix + "p99 detection lag vs legacy"]["met"] is met
        assert t[prefix + "query requests/task"]["bar"] == "≤ 0.2"


def test_new_generation_polling_targets_start_at_fifty_slots() -> None:
    """The issue's bar is for 50 and 500 slots; a 20-slot row has none."""
    name = "20 slots / 200 tasks"
    rows = [_row(name, "polling", "new", _figures(slots=20))]
    assert not [t for t in _targets(rows) if "new generation" in t]


def test_new_generation_callback_target_is_one_point_two_queries_per_task() -> None:
    name = "5 slots / 200 tasks"
    for q, met in ((1.2, True), (1.25, False)):
        rows = [_row(name, "callback", "new", _figures(slots=5, queries_per_task=q))]
        t = _targets(rows)[f"{name}, new generation, callbacks: query requests/task"]
        assert t["met"] is met
        assert t["figure"] == f"{q:.2f}"


def test_a_new_row_that_did_not_run_is_not_measured_with_its_reason() -> None:
    """Targets say "not measured" and give the reason; the tables show it."""
    name = "500 slots / 20,000 tasks"
    reason = "the engine cannot submit new-generation tasks"
    missing = not_run(Workload(name, 500, 20_000), reason)
    rows = [
        _row(name, "polling", "legacy", _figures(slots=500)),
        _row(name, "polling", "new", missing),
        _row(name, "callback", "new", missing),
    ]
    new = {k: t for k, t in _targets(rows).items() if "new generation" in k}
    assert len(new) == 4
    for t in new.values():
        assert t["met"] is None
        assert t["figure"] == f"not run: {reason}"
    lines = report._virtual_table(rows, "polling")
    assert any(
        "| klingmon, new generation |" in line and f"not run: {reason} |" in line
        for line in lines
    )


def test_legacy_table_rows_are_unchanged_by_the_new_ones() -> None:
    """Adding new-generation rows leaves every legacy line as it was."""
    name = "50 slots / 2,000 tasks"
    legacy = _row(name, "polling", "legacy", _figures())
    old = {k: v for k, v in legacy.items() if k != "generation"}
    for mode in ("polling", "callback"):
        before = report._virtual_table([old], mode)
        after = report._virtual_table(
            [legacy, _row(name, mode, "new", _figures())], mode
        )
        assert after[: len(before)] == before
    assert report.targets({"virtual": [old]}) == report.targets({"virtual": [legacy]})


def test_true_runs_read_new_generation_tasks_as_legacy_ones() -> None:
    """The simulator records internal statuses for both generations."""
    runs = true_runs(_counters({}, {}))
    assert all(r.outcome == "succeed" and r.finished_ms is not None for r in runs)


def test_compare_finds_changed_figures_and_ignores_wall_time() -> None:
    """Legacy rows written before generations match their new-format twins."""
    old_row = _row("w", "polling", "legacy", _figures(job_wall_s=5.0))
    del old_row["generation"]
    same = _row("w", "polling", "legacy", _figures(job_wall_s=9.0))
    moved = _row("w", "polling", "legacy", _figures(lag_p99_s=8.5))
    extra = _row("w", "polling", "new", _figures())
    assert differences({"virtual": [old_row]}, {"virtual": [same, extra]}) == (
        {},
        [("w", "klingmon", "polling", "new")],
    )
    changed, _ = differences({"virtual": [old_row]}, {"virtual": [moved]})
    assert changed == {
        ("w", "klingmon", "polling", "legacy"): {"lag_p99_s": (8.0, 8.5)}
    }


def test_compare_checks_the_curve_and_skips_rows_left_to_bench_full() -> None:
    """A curve point is matched by its request_cost; a row make bench did not run
    is one run's only, not a change."""
    point = {**_row("w", "polling", "legacy", _figures()), "request_cost": 0.3}
    other = {**point, "figures": _figures(lag_p99_s=8.5)}
    left = _row("w", "callback", "new", not_run(W, "left to make bench-full"))
    ran = _row("w", "callback", "new", _figures())
    changed, alone = differences(
        {"virtual": [ran], "curve": [point]}, {"virtual": [left], "curve": [other]}
    )
    key = ("w", "klingmon", "polling", "legacy", "request_cost 0.3")
    assert changed == {key: {"lag_p99_s": (8.0, 8.5)}}
    assert alone == [("w", "klingmon", "callback", "new")]
