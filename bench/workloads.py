"""Seeded workloads, the simulator that serves them, and the figures every run yields.

Every contender runs against the same simulator configuration (the simulator's own
duration distribution: 0.5-30 s submitted, log-normal processing with a median of
90 s, a 3 % long tail of 3-12x, 3 % failures), submits the seed's request body in the
same order, and is measured from the simulator's own record of what happened.

A workload runs on either API generation (``Workload.generation``): the same prompts
and the same task durations (the simulator draws a new-generation task's life from the
legacy-shaped fields of its body), sent to ``/v1/videos/text2video`` (legacy) or
``/text-to-video/kling-3.0`` (new, whose slots are a per-model pool).
"""

from __future__ import annotations

import dataclasses
import heapq
import statistics
from dataclasses import dataclass
from typing import Any, Literal

from klingmon.sim import DEFAULT_NEW_MODELS, Faults, SimConfig

__all__ = [
    "ENDPOINTS",
    "GENERATIONS",
    "LEGACY",
    "NEW",
    "QUICK",
    "WORKLOADS",
    "Workload",
    "body",
    "full_only",
    "ideal_makespan",
    "not_run",
    "percentile",
    "sim_config",
    "true_runs",
]

#: The seed's request body: ``model_name`` kling-v2-master, ``duration`` "5".
MODEL = "kling-v2-master"
ENDPOINT = "/v1/videos/text2video"
#: The new generation's counterpart: the model version is in the path.
NEW_ENDPOINT = "/text-to-video/kling-3.0"
#: The simulator's concurrency pool of a new-generation task (model x pack type).
NEW_POOL = "kling-3.0/video"

Generation = Literal["legacy", "new"]
LEGACY: Generation = "legacy"
NEW: Generation = "new"
GENERATIONS: tuple[Generation, ...] = (LEGACY, NEW)
ENDPOINTS: dict[Generation, str] = {LEGACY: ENDPOINT, NEW: NEW_ENDPOINT}
#: Standard Webhooks secret the simulator signs new-format callbacks with.
WEBHOOK_SECRET = "whsec_" + "a2xpbmdtb24tYmVuY2gtd2ViaG9vay1zZWNyZXQtMDAx"


#: The Kling 3.0-like mix, by task index: pro and std, 5, 10 and 15 s clips (the
#: simulator's medians 90-396 s: longer and wider than the seed's single kind).
KLING3_MIX: tuple[tuple[str, int], ...] = (
    ("std", 5),
    ("pro", 5),
    ("std", 10),
    ("pro", 10),
    ("std", 15),
    ("pro", 15),
)
#: The legacy model that takes 3-15 s clips (the 3.0 family on the legacy paths).
MIX_MODEL = "kling-v3"


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    slots: int
    tasks: int
    seed: int = 7
    generation: Generation = LEGACY
    #: The Kling 3.0-like mix of kinds (:data:`KLING3_MIX`) instead of the seed's body.
    mix: bool = False
    #: The tasks come as this many equal batches, ``arrival_gap_s`` apart.
    arrivals: int = 1
    arrival_gap_s: float = 0.0

    def prompts(self) -> list[str]:
        """The same prompts on both generations (the name, not the generation)."""
        return [
            f"{self.name} clip {i:05d}: a lighthouse at dusk" for i in range(self.tasks)
        ]

    def on(self, generation: Generation) -> Workload:
        """This workload on ``generation``."""
        if generation not in GENERATIONS:
            raise ValueError(f"generation must be one of {GENERATIONS}")
        return dataclasses.replace(self, generation=generation)

    @property
    def endpoint(self) -> str:
        return ENDPOINTS[self.generation]

    @property
    def pool(self) -> str:
        """The simulator pool this workload's tasks hold slots in (one model)."""
        if self.generation == NEW:
            return NEW_POOL
        return f"{MIX_MODEL if self.mix else MODEL}/video"

    def body(self, prompt: str, index: int = 0) -> dict[str, Any]:
        """The create body: the seed's, or the same task in the new generation's shape.

        ``settings.duration`` 5 (an integer there) and no ``resolution`` give the
        simulator the seed's ``duration`` "5" standard-mode draw, so the i-th task
        lives exactly as long on both generations (``1080p`` draws as ``pro``).
        """
        if self.mix:
            mode, seconds = KLING3_MIX[index % len(KLING3_MIX)]
            if self.generation == LEGACY:
                return {
                    "model_name": MIX_MODEL,
                    "prompt": prompt,
                    "mode": mode,
                    "duration": str(seconds),
                }
            resolution = "1080p" if mode == "pro" else "720p"
            return {
                "prompt": prompt,
                "settings": {"duration": seconds, "resolution": resolution},
            }
        if self.generation == LEGACY:
            return body(prompt)
        return {"prompt": prompt, "settings": {"duration": 5}}

    def bodies(self) -> list[dict[str, Any]]:
        return [self.body(p, i) for i, p in enumerate(self.prompts())]

    def batches(self) -> list[range]:
        """The task indexes of each arriving batch, in arrival order."""
        size = -(-self.tasks // self.arrivals)
        return [range(i, min(i + size, self.tasks)) for i in range(0, self.tasks, size)]

    def ready_at(self) -> list[float]:
        """Per task: seconds after the start when its batch arrives."""
        ready = [0.0] * self.tasks
        for k, indexes in enumerate(self.batches()):
            for i in indexes:
                ready[i] = k * self.arrival_gap_s
        return ready


#: ``--quick``: the same shapes, small enough for a smoke run.
QUICK = (
    Workload("5 slots / 40 tasks", 5, 40),
    Workload("20 slots / 200 tasks", 20, 200),
    Workload("10 slots / 60 tasks, Kling 3.0 mix", 10, 60, mix=True),
    Workload(
        "10 slots / 60 tasks in 3 batches", 10, 60, arrivals=3, arrival_gap_s=300.0
    ),
)
WORKLOADS = (
    Workload("5 slots / 200 tasks", 5, 200),
    *QUICK[:2],
    Workload("50 slots / 2,000 tasks", 50, 2_000),
    Workload("500 slots / 20,000 tasks", 500, 20_000),
    Workload("20 slots / 400 tasks, Kling 3.0 mix", 20, 400, mix=True),
    Workload(
        "20 slots / 400 tasks in 8 batches", 20, 400, arrivals=8, arrival_gap_s=600.0
    ),
)


def full_only(workload: Workload, contender: str, mode: str) -> bool:  # noqa: ARG001
    """Whether this row is left to ``make bench-full`` (``bench.run --full``).

    The 500-slot workload's rows (alone longer on 2 cores than the rest of ``make
    bench``), and the Kling 3.0 mix's and the arriving batches', rows and curve
    (``make bench`` would take 11.6 min with them): run times in BENCHMARKS.md,
    "Run time". Every contender and mode of a workload stays or goes together.
    """
    return workload.slots >= 500 or workload.mix or workload.arrivals > 1


def body(prompt: str) -> dict[str, Any]:
    """The seed's create body, byte for byte the same fields."""
    return {"model_name": MODEL, "prompt": prompt, "duration": "5"}


def sim_config(workload: Workload, *, callback_drop_rate: float = 0.0) -> SimConfig:
    """The account; on the new generation its model pool has the workload's slots."""
    config = SimConfig(
        seed=workload.seed,
        # 32+ bytes: PyJWT warns about shorter HMAC keys.
        secret_key="sim-secret-key-for-the-benchmarks-0123",  # noqa: S106 - simulated
        slots=workload.slots,
        admin=True,
        faults=Faults(fail_rate=0.03, callback_drop_rate=callback_drop_rate),
    )
    if workload.generation == LEGACY:
        return config
    return dataclasses.replace(
        config,
        new_models=DEFAULT_NEW_MODELS | {NEW_ENDPOINT},
        video_slots=workload.slots,
        webhook_secret=WEBHOOK_SECRET,
    )


@dataclass(frozen=True, slots=True)
class TrueRun:
    """What the simulator says happened to one task (epoch ms on the shared clock)."""

    task_id: str
    created_ms: int
    finished_ms: int | None
    outcome: str


def true_runs(counters: dict[str, Any]) -> list[TrueRun]:
    """Tasks in creation order, with their true finish times."""
    runs = []
    for task_id, info in counters["tasks"].items():
        transitions = info["transitions"]
        last_status, last_ms = transitions[-1]
        done = last_status in ("succeed", "failed")
        runs.append(
            TrueRun(task_id, transitions[0][1], last_ms if done else None, last_status)
        )
    return runs


def ideal_makespan(
    durations: list[float], slots: int, ready: list[float] | None = None
) -> tuple[float, float]:
    """(greedy, bound) for these slot-occupancy durations on ``slots`` slots.

    ``greedy``: every task starts the instant a slot frees (and its batch has
    arrived: ``ready``, seconds), in submission order (a submitter with zero
    detection lag and zero overhead). ``bound``: the classic lower bound
    max(longest task, total work / slots).
    """
    if not durations:
        return 0.0, 0.0
    free = [0.0] * min(slots, len(durations))
    end = 0.0
    for i, d in enumerate(durations):
        start = heapq.heappop(free)
        if ready is not None and i < len(ready):
            start = max(start, ready[i])
        heapq.heappush(free, start + d)
        end = max(end, start + d)
    bound = max(*durations, sum(durations) / slots)
    return end, bound


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), nearest-rank; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary(
    *,
    workload: Workload,
    counters: dict[str, Any],
    start: float,
    detected_ms: dict[str, int],
    done: bool,
    batches: list[set[str]] | None = None,
) -> dict[str, Any]:
    """The figures of one run, from the simulator's record and the detection times.

    ``batches``: the Kling ids of each batch (default: one batch of the workload's
    batches by creation order), for each batch's "done" lag: its last true finish
    to the last finish detected.
    """
    runs = true_runs(counters)
    if batches is None:
        ids = [r.task_id for r in runs]
        batches = [{ids[i] for i in b if i < len(ids)} for b in workload.batches()]
    done_lags = _done_lags(runs, detected_ms, batches) if done else []
    routes = counters["requests_by_route"]
    n = workload.tasks
    lags = [
        (detected_ms[r.task_id] - r.finished_ms) / 1000
        for r in runs
        if r.finished_ms is not None and r.task_id in detected_ms
    ]
    finished = [r for r in runs if r.finished_ms is not None]
    occupied = [
        (r.finished_ms - r.created_ms) / 1000 for r in runs if r.finished_ms is not None
    ]
    ready_at = workload.ready_at()
    ready = [
        ready_at[min(i, n - 1)] for i, r in enumerate(runs) if r.finished_ms is not None
    ]
    greedy, bound = ideal_makespan(
        occupied, workload.slots, ready if workload.arrivals > 1 else None
    )
    makespan = (
        (max(detected_ms.values()) / 1000 - start) if detected_ms and done else None
    )
    creates, gets, lists = (routes.get(k, 0) for k in ("create", "get", "list"))
    requests = {"create": creates, "get": gets, "list": lists}
    max_in_flight = counters["max_in_flight"]
    if workload.generation == NEW:
        # Batched ``GET /tasks?task_ids=`` count as GETs, ``POST /tasks`` sweeps as
        # list pages: one request each, however many tasks they answer for.
        batched, sweeps = routes.get("tasks_get", 0), routes.get("tasks_post", 0)
        requests.update(tasks_get=batched, tasks_post=sweeps)
        gets, lists = gets + batched, lists + sweeps
        max_in_flight = counters.get("max_in_flight_per_pool", {}).get(workload.pool, 0)
    out: dict[str, Any] = {
        "tasks": n,
        "slots": workload.slots,
        "finished": done,
        "created_in_kling": len(runs),
        "terminal_in_kling": len(finished),
        "detected": len(detected_ms),
        "makespan_s": makespan,
        "ideal_makespan_s": greedy,
        "lower_bound_s": bound,
        "utilisation": (greedy / makespan) if makespan else None,
        "utilisation_vs_bound": (bound / makespan) if makespan else None,
        "creates_per_task": creates / n,
        "gets_per_task": gets / n,
        "list_pages_per_task": lists / n,
        "queries_per_task": (gets + lists) / n,
        "requests": requests,
        "lag_p50_s": percentile(lags, 50),
        "lag_p95_s": percentile(lags, 95),
        "lag_p99_s": percentile(lags, 99),
        "lag_max_s": max(lags) if lags else None,
        "lag_mean_s": statistics.fmean(lags) if lags else None,
        "done_lag_max_s": max(done_lags) if done_lags else None,
        "done_lag_p99_s": percentile(done_lags, 99),
        "answers_1303": counters["answers_1303"],
        "answers_1302": counters["answers_1302"],
        "max_in_flight": max_in_flight,
        "callbacks": counters.get("callbacks", {}),
    }
    return out


def _done_lags(
    runs: list[TrueRun], detected_ms: dict[str, int], batches: list[set[str]]
) -> list[float]:
    """Per batch: seconds from its last true finish to its last detected one."""
    finished = {r.task_id: r.finished_ms for r in runs if r.finished_ms is not None}
    lags = []
    for ids in batches:
        true = [finished[i] for i in ids if i in finished]
        seen = [detected_ms[i] for i in ids if i in detected_ms]
        if true and seen:
            lags.append((max(seen) - max(true)) / 1000)
    return lags


def not_run(workload: Workload, reason: str) -> dict[str, Any]:
    """The figures of a run that could not start (or crashed outside its guard)."""
    return {
        "tasks": workload.tasks,
        "slots": workload.slots,
        "finished": False,
        "not_run": True,
        "created_in_kling": 0,
        "terminal_in_kling": 0,
        "detected": 0,
        "makespan_s": None,
        "ideal_makespan_s": None,
        "lower_bound_s": None,
        "utilisation": None,
        "utilisation_vs_bound": None,
        "creates_per_task": 0.0,
        "gets_per_task": 0.0,
        "list_pages_per_task": 0.0,
        "queries_per_task": 0.0,
        "requests": {"create": 0, "get": 0, "list": 0},
        "lag_p50_s": None,
        "lag_p95_s": None,
        "lag_p99_s": None,
        "lag_max_s": None,
        "lag_mean_s": None,
        "done_lag_max_s": None,
        "done_lag_p99_s": None,
        "answers_1303": 0,
        "answers_1302": 0,
        "max_in_flight": 0,
        "callbacks": {},
        "wall_s": 0.0,
        "virtual_s": 0.0,
        "why_not": f"not run: {reason}"[:300],
    }
