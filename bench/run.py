"""``python -m bench.run``: every benchmark, then ``bench/results/latest.{json,md}``.

Virtual-time runs (``bench.harness``) go to a pool of ``--jobs`` processes, the
largest first; the real-time figures (``bench.realtime``) run afterwards, alone, so
that nothing else competes with them for the CPU.

    python -m bench.run                 # everything (make bench)
    python -m bench.run --quick         # small workloads and short real-time runs
    python -m bench.run --only virtual  # or store, carry, ingest, serve, fleet
                                        # (comma-separated; to results/partial.*)
    python -m bench.run --generations legacy   # leave out the new-generation rows

klingmon runs every virtual workload on both API generations (the same prompts and
task durations); the baselines speak only the legacy one.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from bench import fleet, realtime, report, serve_load
from bench.harness import ENGINE_SETTINGS, run_contender
from bench.workloads import (
    GENERATIONS,
    LEGACY,
    NEW,
    QUICK,
    WORKLOADS,
    Workload,
    not_run,
)
from klingmon.policy import SchedulePolicy

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
    if request_cost is not None:
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


def run_curve(
    workloads: tuple[Workload, ...], jobs: int, budget: float
) -> list[dict[str, Any]]:
    """klingmon polling (legacy) at each of :data:`CURVE_COSTS` but the default
    (the virtual section has that point, and (b)'s)."""
    default = SchedulePolicy().request_cost
    todo = [(w, c) for w in workloads for c in CURVE_COSTS if c != default]
    todo.sort(key=lambda p: -p[0].tasks)
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [
            pool.submit(_job, w, "klingmon", "polling", budget, c) for w, c in todo
        ]
        for future in as_completed(futures):
            result = future.result()
            f = result["figures"]
            print(
                f"  {result['workload']:<34} request_cost {result['request_cost']:<4}"
                f" wall {f['job_wall_s']:6.1f} s  {f['why_not'] or 'done'}",
                flush=True,
            )
            results.append(result)
    return results


def plan(
    workloads: tuple[Workload, ...], generations: tuple[str, ...] = GENERATIONS
) -> list[tuple[Workload, str, str]]:
    """Every (workload on its generation, contender, mode) to run, in table order."""
    return [
        (w.on(g), c, m) for w in workloads for c, m, g in CONTENDERS if g in generations
    ]


def _key(workload: Workload, contender: str, mode: str) -> tuple[str, str, str, str]:
    return (workload.name, contender, mode, workload.generation)


def run_virtual(
    workloads: tuple[Workload, ...],
    jobs: int,
    budget: float,
    generations: tuple[str, ...] = GENERATIONS,
) -> list[dict[str, Any]]:
    jobs_plan = plan(workloads, generations)
    order = {_key(*p): i for i, p in enumerate(jobs_plan)}
    # Largest first: they bound the total time; klingmon before the baselines, and
    # its callback runs (the longest) before its polling ones.
    jobs_plan.sort(key=lambda p: (-p[0].tasks, p[1] != "klingmon", p[2] != "callback"))
    results: list[dict[str, Any]] = []
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(_job, w, c, m, budget) for w, c, m in jobs_plan]
        for future in as_completed(futures):
            result = future.result()
            f = result["figures"]
            print(
                f"  {result['workload']:<26} {result['contender']:<10} "
                f"{result['mode']:<8} {result['generation']:<6}"
                f" wall {f['job_wall_s']:6.1f} s  virtual {f['virtual_s']:8.0f} s"
                f"  {f['why_not'] or 'done'}",
                flush=True,
            )
            results.append(result)
    results.sort(
        key=lambda r: order[(r["workload"], r["contender"], r["mode"], r["generation"])]
    )
    return results


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
        "--budget", type=float, default=2400.0, help="wall seconds per virtual run"
    )
    parser.add_argument(
        "--generations",
        default=",".join(GENERATIONS),
        help=f"virtual runs on these API generations, comma-separated: {GENERATIONS}",
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
        "engine_settings": {**ENGINE_SETTINGS, "slots": "the account's slots"},
    }
    if "virtual" in only:
        print("virtual time:", flush=True)
        workloads = QUICK if args.quick else WORKLOADS
        budget = min(args.budget, 60.0) if args.quick else args.budget
        data["virtual"] = run_virtual(workloads, args.jobs, budget, generations)
    if "curve" in only:
        print("curve: utilisation vs queries, legacy polling", flush=True)
        small = QUICK if args.quick else tuple(w for w in WORKLOADS if w.tasks <= 2_000)
        budget = min(args.budget, 60.0) if args.quick else args.budget
        data["curve"] = run_curve(small, args.jobs, budget)
    if "store" in only:
        finished = 20_000 if args.quick else 1_000_000
        print(f"store: {finished:,} finished tasks", flush=True)
        data["store"] = realtime.store_figures(finished)
    if "carry" in only:
        carried = 500 if args.quick else 10_000
        print(f"carry: {carried:,} tasks", flush=True)
        data["carry"] = realtime.carry_figures(carried)
    if "ingest" in only:
        print("ingest: callbacks per second", flush=True)
        data["ingest"] = realtime.ingest_figures(seconds=2 if args.quick else 5)
    if "serve" in only:
        print("serve: callback answer times, engine idle vs carrying", flush=True)
        data["serve"] = serve_load.serve_load_figures(
            tasks=500 if args.quick else 2_000, seconds=5 if args.quick else 10
        )
    if "fleet" in only:
        print("fleet: 1 worker on SQLite, 3 workers on PostgreSQL", flush=True)
        data["fleet"] = fleet.fleet_figures(tasks=200 if args.quick else 600)
    data["total_wall_s"] = time.perf_counter() - started
    # A partial run leaves the full one's results alone.
    full = only == set(SECTIONS)
    stem = "quick" if args.quick else "latest" if full else "partial"
    paths = report.write(data, stem=stem, update_benchmarks=stem == "latest")
    print(f"done in {data['total_wall_s']:.0f} s: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
