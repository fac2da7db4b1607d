"""``python -m bench.pools``: a mixed batch on three pools, per pool against one number.

Kling counts concurrency per account x model version x pack type, an image task
taking ``n`` slots. The workload mixes Kling 3.0 video, Kling 2.6 video and Kling 3.0
images of ``n = 4`` on pools of 5, 5 and 10 slots (the simulator's per-pool record is
the truth). klingmon counting per pool runs beside the single-number governor it had
before (``EngineSettings.pooled`` False: one ``slots`` for the account, every task one
slot), on the same virtual-time loop, simulator and seed as ``bench.harness``.

Per pool, *utilisation* is the ideal greedy makespan of that pool's tasks (each
starts the instant its slots are free, FIFO, zero lag) over the time its last task
was seen ending; *slot occupancy* is the slot-seconds used over size x that time
(two images of 4 fill at most 8 of 10 slots, so it cannot reach 100 % there).
Writes ``bench/results/pools.{json,md}``.
"""

from __future__ import annotations

import asyncio
import heapq
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench._results import budget_from, met, save
from bench.harness import (
    RECEIVER_URL,
    _guarded,
    _inline_threadpool,
    _LateApp,
)
from bench.vtime import LoopClock, run_virtual
from bench.workloads import WEBHOOK_SECRET
from klingmon import web
from klingmon.api import GenericRequest
from klingmon.config import Secret, Settings
from klingmon.domain import TERMINAL
from klingmon.runtime import build_runtime
from klingmon.sim import DEFAULT_NEW_MODELS, Faults, SimConfig, Simulator

__all__ = ["POOLS", "Kind", "main", "run"]

_SECRET = "klingmon-bench-callback-secret-0123456789"  # noqa: S105 - simulated


@dataclass(frozen=True, slots=True)
class Kind:
    """One part of the mix: its create path, how many tasks, slots each."""

    name: str
    endpoint: str
    pool: str
    tasks: int
    n: int = 1

    def body(self, i: int) -> dict[str, Any]:
        """5 s clips (3.0: 720p and 1080p in turn) and image sets of ``n``: the
        simulator draws each pool's tasks alike, so the pools take about as long
        (100 / 5 slots, 100 / 5, 40 / 2 at a time) and none hides another."""
        prompt = f"pools {self.name} {i:04d}: a lighthouse at dusk"
        if self.n > 1:
            return {"prompt": prompt, "n": self.n}
        settings: dict[str, Any] = {"duration": 5}
        if self.name == "kling-3.0":
            settings["resolution"] = ("720p", "1080p")[i % 2]
        return {"prompt": prompt, "settings": settings}


MIX = (
    Kind("kling-3.0", "/text-to-video/kling-3.0", "kling-3.0/video", 100),
    Kind("kling-2.6", "/text-to-video/kling-2.6", "kling-2.6/video", 100),
    Kind("image n=4", "/image-generation/kling-3.0", "kling-3.0/image", 40, n=4),
)
#: The account's pools: what Kling enforces (the simulator) and klingmon is told.
POOLS = {"kling-3.0/video": 5, "kling-2.6/video": 5, "kling-3.0/image": 10}
#: The single number today's governor would be given: the sum of the pools.
SINGLE_SLOTS = 20
SEED = 11


def requests() -> list[tuple[Kind, GenericRequest]]:
    """The batch, interleaved: the kinds in turn, each in its own order."""
    queues = [
        [
            (k, GenericRequest(task_path=k.endpoint, payload=k.body(i)))
            for i in range(k.tasks)
        ]
        for k in MIX
    ]
    out: list[tuple[Kind, GenericRequest]] = []
    while any(queues):
        out.extend(q.pop(0) for q in queues if q)
    return out


def sim_config(*, callbacks: bool) -> SimConfig:
    return SimConfig(
        seed=SEED,
        secret_key="sim-secret-key-for-the-benchmarks-0123",  # noqa: S106 - simulated
        admin=True,
        faults=Faults(fail_rate=0.03, callback_drop_rate=0.05 if callbacks else 0.0),
        new_models=DEFAULT_NEW_MODELS,
        video_slots=POOLS["kling-3.0/video"],
        image_slots=POOLS["kling-3.0/image"],
        webhook_secret=WEBHOOK_SECRET,
        # Each task's life is its own, whatever order the pools interleave in, so
        # every contender and mode runs the same 240 tasks.
        draws="prompt",
    )


def weighted_greedy(durations: list[float], weights: list[int], size: int) -> float:
    """Makespan when each task starts as soon as its slots are free, in order."""
    running: list[tuple[float, int]] = []
    free, now, end = size, 0.0, 0.0
    for d, w in zip(durations, weights, strict=True):
        need = min(w, size)
        while free < need:
            finish, held = heapq.heappop(running)
            now, free = max(now, finish), free + held
        heapq.heappush(running, (now + d, need))
        free -= need
        end = max(end, now + d)
    return end


async def _run(pooled: bool, callbacks: bool, wall_budget: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    receiver = _LateApp()
    sim = Simulator(
        sim_config(callbacks=callbacks),
        clock=clock,
        callback_transport=httpx.ASGITransport(app=receiver) if callbacks else None,
    )
    engine: dict[str, Any] = {"seed": 1, "pooled": pooled}
    if pooled:
        engine["pools"] = tuple(POOLS.items())
    with tempfile.TemporaryDirectory(prefix="klingmon-pools-") as tmp:
        settings = Settings(
            db=str(Path(tmp) / "bench.db"),
            api_base="http://sim.test",
            api_key=Secret(sim.config.api_key or ""),
            slots=SINGLE_SLOTS,
            download=False,
            public_url=RECEIVER_URL if callbacks else None,
            callback_secret=Secret(_SECRET),
            webhook_secret=Secret(WEBHOOK_SECRET),
        )
        runtime = build_runtime(
            settings, clock=clock, transport=sim.transport(), engine=engine
        )
        monitor = runtime.monitor(runtime.client())
        if callbacks:
            receiver.app = runtime.web_app(
                allowed_hosts=[web.url_host(RECEIVER_URL) or ""]
            )
        start = clock.now()
        batch = monitor.submit([r for _, r in requests()], batch="pools")
        wall = time.perf_counter()
        finished, why = await _guarded(monitor.run(batch=batch.id), wall_budget)
        wall = time.perf_counter() - wall
        counters = sim.counters()
        rows = runtime.store.tasks.tasks(batch.id)
        kling = {row.id: row.task_id for row in rows}
        detected: dict[str, int] = {}
        for event in runtime.store.outbox.events(batch_id=batch.id):
            kid = kling.get(event.task_id)
            if event.new_status in TERMINAL and kid:
                detected.setdefault(kid, event.at_ms)
        await monitor.aclose()
    out = _figures(counters, detected, start)
    out.update(finished=finished, why_not=why, wall_s=wall)
    return out


def _figures(
    counters: dict[str, Any], detected: dict[str, int], start: float
) -> dict[str, Any]:
    """Makespan, per-pool utilisation, in-flight maxima and 1303s from the record."""
    sizes = {k.pool: POOLS[k.pool] for k in MIX}
    slots = {k.pool: k.n for k in MIX}
    per_pool: dict[str, dict[str, Any]] = {}
    infos = sorted(counters["tasks"].items(), key=lambda kv: kv[1]["transitions"][0][1])
    for pool, size in sizes.items():
        mine = [(tid, i) for tid, i in infos if i["pool"] == pool]
        spans = [
            (i["transitions"][-1][1] - i["transitions"][0][1]) / 1000
            for _, i in mine
            if i["transitions"][-1][0] in ("succeed", "failed")
        ]
        seen = [detected[t] for t, _ in mine if t in detected]
        span = (max(seen) / 1000 - start) if seen else None
        ideal = weighted_greedy(spans, [slots[pool]] * len(spans), size)
        per_pool[pool] = {
            "size": size,
            "slots_per_task": slots[pool],
            "tasks": len(mine),
            "makespan_s": span,
            "ideal_makespan_s": ideal,
            "utilisation": ideal / span if span else None,
            "slot_occupancy": (
                sum(spans) * slots[pool] / (size * span) if span else None
            ),
            "max_in_flight": counters["max_in_flight_per_pool"].get(pool, 0),
            "answers_1303": counters["answers_1303_per_pool"].get(pool, 0),
        }
    creates = sum(counters["creates_per_external_id"].values())
    refused = counters["answers_1303"]
    return {
        "tasks": sum(k.tasks for k in MIX),
        "created_in_kling": len(counters["tasks"]),
        "detected": len(detected),
        "makespan_s": (max(detected.values()) / 1000 - start) if detected else None,
        "creates": creates,
        "answers_1303": refused,
        "share_1303": refused / creates if creates else None,
        "max_in_flight_per_pool": dict(counters["max_in_flight_per_pool"]),
        "pools": per_pool,
    }


CONTENDERS = (
    ("per pool", True, "polling"),
    ("per pool", True, "callback"),
    (f"one number ({SINGLE_SLOTS})", False, "polling"),
    (f"one number ({SINGLE_SLOTS})", False, "callback"),
)


def run(wall_budget: float = 600.0) -> list[dict[str, Any]]:
    """Every contender, a fresh loop each; their rows in table order."""
    rows = []
    with _inline_threadpool():
        for name, pooled, mode in CONTENDERS:
            figures = run_virtual(_run(pooled, mode == "callback", wall_budget))
            rows.append({"contender": name, "mode": mode, "figures": figures})
            print(
                f"  {name:<16} {mode:<8} makespan {figures['makespan_s'] or 0:8.0f} s"
                f"  1303 {figures['answers_1303']:4d}  wall {figures['wall_s']:5.1f} s",
                flush=True,
            )
    return rows


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f} s"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table BENCHMARKS.md quotes, and the targets against the single number."""
    lines = [
        "| contender | mode | makespan | 1303 / creates | "
        + " | ".join(f"{p} ({s}): util / occ / max" for p, s in POOLS.items())
        + " | outcome |",
        "|" + " --- |" * (5 + len(POOLS)),
    ]
    for row in rows:
        f = row["figures"]
        cells = [
            f"{_pct(p['utilisation'])} / {_pct(p['slot_occupancy'])} / "
            f"{p['max_in_flight']}"
            for p in f["pools"].values()
        ]
        share = f"{f['answers_1303']} / {f['creates']} ({_pct(f['share_1303'])})"
        outcome = "done" if f["finished"] else f"not done: {f['why_not']}"
        lines.append(
            f"| {row['contender']} | {row['mode']} | {_secs(f['makespan_s'])} | "
            f"{share} | " + " | ".join(cells) + f" | {outcome} |"
        )
    lines += ["", *_targets(rows)]
    return "\n".join(lines) + "\n"


def _targets(rows: list[dict[str, Any]]) -> list[str]:
    out = ["| target | measured | met |", "| --- | --- | --- |"]
    by = {(r["contender"], r["mode"]): r["figures"] for r in rows}
    for mode in ("polling", "callback"):
        pooled = by[("per pool", mode)]
        single = by[(f"one number ({SINGLE_SLOTS})", mode)]
        worst = min(p["utilisation"] or 0.0 for p in pooled["pools"].values())
        over = [p for p, f in pooled["pools"].items() if f["max_in_flight"] > f["size"]]
        cut = (
            1 - pooled["makespan_s"] / single["makespan_s"]
            if pooled["makespan_s"] and single["makespan_s"]
            else None
        )
        share = pooled["share_1303"] or 0.0
        checks = [
            ("lowest per-pool utilisation ≥ 95 %", _pct(worst), worst >= 0.95),
            (
                "makespan ≥ 30 % below one number",
                _pct(cut),
                cut is not None and cut >= 0.30,
            ),
            (
                "no pool over its size (simulator's maxima)",
                ", ".join(over) or "none over",
                not over,
            ),
            ("1303 ≤ 1 % of creates", _pct(share), share <= 0.01),
        ]
        out += [f"| {mode}: {what} | {got} | {met(ok)} |" for what, got, ok in checks]
    return out


def main(argv: list[str] | None = None) -> int:
    rows = run(budget_from("python -m bench.pools", argv))
    save("pools", rows, markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
