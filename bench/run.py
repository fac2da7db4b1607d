"""``python -m bench.run``: every benchmark, then ``bench/results/latest.{json,md}``.

Virtual-time runs (``bench.harness``) go to a pool of ``--jobs`` processes, the
largest first; the real-time figures (``bench.realtime``) run afterwards, alone, so
that nothing else competes with them for the CPU.

    python -m bench.run                 # everything (make bench)
    python -m bench.run --quick         # small workloads and short real-time runs
    python -m bench.run --only virtual  # or store, carry, ingest, serve, fleet
                                        # (comma-separated; to results/partial.*)
    python -m bench.run --generations legacy   # leave out the new-generation rows
    python -m bench.run --full          # every row, the 500-slot ones too (bench-full)

klingmon runs every virtual workload on both API generations (the same prompts and
task durations); the baselines speak only the legacy one. The virtual rows and the
curve's points share one pool, costliest first, so that no core idles between them.
Without ``--full`` the rows ``bench.workloads.full_only`` names (the 500-slot
workload's, which alone take longer than the rest, the Kling 3.0 mix's and the
arriving batches') are "not run" rows saying so, and their curves are not run
(BENCHMARKS.md, "Run time").
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TYPE_CHECKING, Any

from bench import fleet, realtime, report, serve_load
from bench.harness import ENGINE_SETTINGS, run_contender
from bench.workloads import (
    GENERATIONS,
    LEGACY,
    NEW,
    QUICK,
    WORKLOADS,
    Workload,
    full_only,
    not_run,
)
from klingmon.policy import SchedulePolicy

if TYPE_CHECKING:
    from collections.abc import Callable

SECTIONS = ("virtual", "curve", "store", "carry", "ingest", "serve", "fleet")
#: The request budgets of the utilisation-versus-queries curve: the schedule's
#: ``request_cost`` (slot-seconds a query is worth), the default in the middle.
CURVE_COSTS = (0.3, 1.0, 3.0)
#: (contender, mode, generation): the baselines only poll, on the legacy generation;
#: klingmon runs both ways on both generations.
CONTENDERS = (
    ("seed", "polling", LEGACY),
    ("seed-fixed", "polling", LEGACY),
    ("klingmon", "polling", LEGACY),
    ("klingmon", "polling", NEW),
    ("klingmon", "callback", LEGACY),
    ("klingmon", "callback", NEW),
)


def _quiet() -> None:
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)


def _job(
    workload: Workload,
    contender: str,
    mode: str,
    budget: float,
    request_cost: float | None = None,
) -> dict[str, Any]:
    _quiet()
    # A pool worker runs rows of both kinds in turn: each sets its own schedule.
    if request_cost is None:
        ENGINE_SETTINGS.pop("schedule", None)
    else:
        ENGINE_SETTINGS["schedule"] = SchedulePolicy(request_cost=request_cost)
    t = time.perf_counter()
    try:
        figures = run_contender(workload, contender, mode, wall_budget=budget)
    except Exception as exc:
        if workload.generation != NEW:
            raise
        figures = not_run(workload, f"{type(exc).__name__}: {exc}")
    figures["job_wall_s"] = time.perf_counter() - t
    return {
        "workload": workload.name,
        "contender": contender,
        "mode": mode,
        "generation": workload.generation,
        "request_cost": request_cost,
        "figures": figures,
    }


#: (workload, contender, mode, request_cost): one virtual run; ``request_cost`` None
#: is the default schedule (a row of the tables), a number a point of the curve.
Job = tuple[Workload, str, str, float | None]


def curve_plan(workloads: tuple[Workload, ...]) -> list[Job]:
    """klingmon polling (legacy) at each of :data:`CURVE_COSTS` but the default
    (the virtual section has that point, and (b)'s)."""
    default = SchedulePolicy().request_cost
    return [
        (w, "klingmon", "polling", c)
        for w in workloads
        for c in CURVE_COSTS
        if c != default
    ]


def plan(
    workloads: tuple[Workload, ...], generations: tuple[str, ...] = GENERATIONS
) -> list[tuple[Workload, str, str]]:
    """Every (workload on its generation, contender, mode) to run, in table order."""
    return [
        (w.on(g), c, m) for w in workloads for c, m, g in CONTENDERS if g in generations
    ]


def estimate(job: Job) -> float:
    """Rough CPU seconds of one run, to start the costliest first (measured
    2026-12-03, BENCHMARKS.md "Run time"): klingmon's rounds cost 35-150 ms of CPU
    a task, (b)'s a tenth of that, (a) dies at once; the Kling 3.0 mix runs twice as
    long a batch, so twice the rounds."""
    workload, contender, _mode, _cost = job
    per_task = {"klingmon": 0.06, "seed-fixed": 0.005}.get(contender, 0.0)
    return per_task * workload.tasks * (2.0 if workload.mix else 1.0)


def run_jobs(jobs_plan: list[Job], jobs: int, budget: float) -> list[dict[str, Any]]:
    """Every run in one pool of ``jobs`` processes, the costliest first (a
    longest-processing-time schedule: the last to finish are the short ones)."""
    todo = sorted(jobs_plan, key=lambda j: -estimate(j))
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_job, w, c, m, budget, cost) for w, c, m, cost in todo]
        for future in as_completed(futures):
            result = future.result()
            f = result["figures"]
            point = result["request_cost"]
            print(
                f"  {result['workload']:<34} {result['contender']:<10} "
                f"{result['mode']:<8} {result['generation']:<6} "
                + (f"request_cost {point:<4}" if point is not None else " " * 17)
                + f" wall {f['job_wall_s']:6.1f} s  virtual {f['virtual_s']:8.0f} s"
                f"  {f['why_not'] or 'done'}",
                flush=True,
            )
            results.append(result)
    return results


def _key(workload: Workload, contender: str, mode: str) -> tuple[str, str, str, str]:
    return (workload.name, contender, mode, workload.generation)


def run_virtual(
    workloads: tuple[Workload, ...],
    jobs: int,
    budget: float,
    generations: tuple[str, ...] = GENERATIONS,
    *,
    curve: tuple[Workload, ...] = (),
    full: bool = True,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows in table order, the curve's points): the rows of ``workloads`` and the
    curve of ``curve`` in one pool. Unless ``full``, the rows :func:`full_only`
    names are "not run" rows naming ``make bench-full``."""
    rows = plan(workloads, generations)
    order = {_key(*p): i for i, p in enumerate(rows)}
    left = [] if full else [r for r in rows if full_only(*r)]
    todo = [(w, c, m, None) for w, c, m in rows if (w, c, m) not in left]
    results = run_jobs(todo + curve_plan(curve), jobs, budget)
    virtual = [r for r in results if r["request_cost"] is None]
    points = [r for r in results if r["request_cost"] is not None]
    for w, c, m in left:
        figures = not_run(w, "left to make bench-full (python -m bench.run --full)")
        figures["job_wall_s"] = 0.0
        virtual.append(
            {
                "workload": w.name,
                "contender": c,
                "mode": m,
                "generation": w.generation,
                "request_cost": None,
                "figures": figures,
            }
        )
    virtual.sort(
        key=lambda r: order[(r["workload"], r["contender"], r["mode"], r["generation"])]
    )
    points.sort(key=lambda r: (-r["figures"]["tasks"], r["request_cost"]))
    return virtual, points


def _realtime(
    only: set[str], quick: bool, data: dict[str, Any], sections: dict[str, float]
) -> None:
    """The real-time sections, one after another, each alone on the machine."""
    finished = 20_000 if quick else 1_000_000
    carried = 500 if quick else 10_000
    runs: list[tuple[str, str, Callable[[], Any]]] = [
        (
            "store",
            f"{finished:,} finished tasks",
            lambda: realtime.store_figures(finished),
        ),
        ("carry", f"{carried:,} tasks", lambda: realtime.carry_figures(carried)),
        (
            "ingest",
            "callbacks per second",
            lambda: realtime.ingest_figures(seconds=2 if quick else 5),
        ),
        (
            "serve",
            "callback answer times, engine idle vs carrying",
            lambda: serve_load.serve_load_figures(
                tasks=500 if quick else 2_000, seconds=5 if quick else 20
            ),
        ),
        (
            "fleet",
            "1 worker on SQLite, 3 workers on PostgreSQL",
            lambda: fleet.fleet_figures(tasks=200 if quick else 600),
        ),
    ]
    for name, what, measure in runs:
        if name not in only:
            continue
        t = time.perf_counter()
        print(f"{name}: {what}", flush=True)
        data[name] = measure()
        sections[name] = time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small workloads only")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated: {SECTIONS}"
    )
    parser.add_argument(
        "--jobs", type=int, default=2, help="processes for virtual runs"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="wall seconds per virtual run (default 2400, 60 with --quick)",
    )
    parser.add_argument(
        "--generations",
        default=",".join(GENERATIONS),
        help=f"virtual runs on these API generations, comma-separated: {GENERATIONS}",
    )
    parser.add_argument(
        "--full",
        action="store_true",
        help="every row (make bench-full); without it bench.workloads.full_only's"
        " rows are not run",
    )
    args = parser.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {sorted(unknown)}")
    generations = tuple(g for g in GENERATIONS if g in args.generations.split(","))
    if not generations or set(args.generations.split(",")) - set(GENERATIONS):
        parser.error(f"--generations: a comma-separated subset of {GENERATIONS}")
    _quiet()
    started = time.perf_counter()
    data: dict[str, Any] = {
        "command": "python -m bench.run "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "quick": args.quick,
        "full": args.full,
        "engine_settings": {**ENGINE_SETTINGS, "slots": "the account's slots"},
    }
    sections: dict[str, float] = {}
    data["section_wall_s"] = sections
    if only & {"virtual", "curve"}:
        t = time.perf_counter()
        names = ("virtual", "curve")
        print(" and ".join(n for n in names if n in only) + ":", flush=True)
        workloads = QUICK if args.quick else WORKLOADS
        small = tuple(
            w
            for w in workloads
            if w.tasks <= 2_000
            and (args.full or args.quick or not full_only(w, "klingmon", "polling"))
        )
        budget = args.budget or (60.0 if args.quick else 2400.0)
        virtual, curve = run_virtual(
            workloads if "virtual" in only else (),
            args.jobs,
            budget,
            generations,
            curve=small if "curve" in only else (),
            full=args.full or args.quick,
        )
        if "virtual" in only:
            data["virtual"] = virtual
        if "curve" in only:
            data["curve"] = curve
        sections["virtual and curve"] = time.perf_counter() - t
    _realtime(only, args.quick, data, sections)
    data["total_wall_s"] = time.perf_counter() - started
    # A partial run leaves the full one's results alone.
    full = only == set(SECTIONS)
    stem = "quick" if args.quick else "latest" if full else "partial"
    paths = report.write(data, stem=stem, update_benchmarks=stem == "latest")
    print(f"done in {data['total_wall_s']:.0f} s: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
