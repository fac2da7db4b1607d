"""``python -m bench.accounts``: one batch on two accounts against the same on one.

Two simulated accounts behind one base URL (:class:`~klingmon.sim.SimAccounts`, told
apart by their keys), each with a Kling 3.0 video pool of 5 slots. A batch of 400
five-second clips goes once on account ``a`` alone and once on ``a`` and ``b``
(``Monitor.submit(accounts=[...])``): the claim places each task on the account
with the most free slots and fixes it there. Same virtual-time loop, simulator
seeds and engine as ``bench.harness``; the simulators' per-account record is the
truth for creates, 1303s and the most tasks in flight per pool.

The target: the two accounts finish in at most 55 % of one account's makespan
(a perfect split is 50 %). Writes ``bench/results/accounts.{json,md}``.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench._results import budget_from, met, save
from bench.harness import _guarded, _inline_threadpool
from bench.pools import weighted_greedy
from bench.vtime import LoopClock, run_virtual
from klingmon.api import GenericRequest
from klingmon.config import AccountSettings, Secret, Settings
from klingmon.domain import TERMINAL
from klingmon.runtime import build_runtime
from klingmon.sim import DEFAULT_NEW_MODELS, Faults, SimAccounts, SimConfig

__all__ = ["ACCOUNTS", "main", "run"]

ENDPOINT = "/text-to-video/kling-3.0"
POOL = "kling-3.0/video"
TASKS = 400
SLOTS = 5
ACCOUNTS = ("a", "b")
SEED = 17
TARGET = 0.55


def requests() -> list[GenericRequest]:
    """5 s clips, 720p and 1080p in turn (as ``bench.pools``' Kling 3.0 part)."""
    return [
        GenericRequest(
            task_path=ENDPOINT,
            payload={
                "prompt": f"accounts {i:04d}: a lighthouse at dusk",
                "settings": {"duration": 5, "resolution": ("720p", "1080p")[i % 2]},
            },
        )
        for i in range(TASKS)
    ]


def sim_config(name: str, seed: int) -> SimConfig:
    return SimConfig(
        seed=seed,
        access_key=f"{name}-access",
        secret_key=f"{name}-secret-key-for-the-benchmarks-0123",
        api_key=f"{name}-api-key",
        admin=True,
        faults=Faults(fail_rate=0.03),
        new_models=DEFAULT_NEW_MODELS,
        video_slots=SLOTS,
        # A task lives alike on either account: both contenders run the same 400.
        draws="prompt",
        draws_seed=SEED,
    )


def settings(db: Path) -> Settings:
    """Both accounts as a user would configure them: ``[accounts.NAME]``."""
    return Settings(
        db=str(db),
        api_base="http://sim.test",
        slots=SLOTS,
        download=False,
        accounts=tuple(
            AccountSettings(name=name, api_key=Secret(f"{name}-api-key"), slots=SLOTS)
            for name in ACCOUNTS
        ),
    )


async def _run(accounts: tuple[str, ...], wall_budget: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    clock = LoopClock(loop)
    sims = SimAccounts(
        {name: sim_config(name, SEED + i) for i, name in enumerate(ACCOUNTS)},
        clock=clock,
    )
    with tempfile.TemporaryDirectory(prefix="klingmon-accounts-") as tmp:
        runtime = build_runtime(
            settings(Path(tmp) / "bench.db"),
            clock=clock,
            transport=sims.transport(),
            engine={"seed": 1},
        )
        monitor = runtime.engine_monitor()
        start = clock.now()
        batch = monitor.submit(requests(), batch="accounts", accounts=list(accounts))
        wall = time.perf_counter()
        finished, why = await _guarded(monitor.run(batch=batch.id), wall_budget)
        wall = time.perf_counter() - wall
        rows = runtime.store.tasks.tasks(batch.id)
        kling = {row.id: row.task_id for row in rows}
        detected: dict[str, int] = {}
        for event in runtime.store.outbox.events(batch_id=batch.id):
            kid = kling.get(event.task_id)
            if event.new_status in TERMINAL and kid:
                detected.setdefault(kid, event.at_ms)
        placed = {name: sum(r.account == name for r in rows) for name in ACCOUNTS}
        await monitor.close_clients()
        runtime.close()
    counters = sims.counters()
    out = _figures(counters, detected, start, len(accounts))
    out.update(
        accounts=list(accounts),
        tasks_per_account=placed,
        finished=finished,
        why_not=why,
        wall_s=wall,
    )
    return out


def _figures(
    counters: dict[str, dict[str, Any]],
    detected: dict[str, int],
    start: float,
    used: int,
) -> dict[str, Any]:
    """Makespan, the ideal greedy one, creates, 1303s and maxima per account."""
    spans: list[tuple[float, float]] = []
    for c in counters.values():
        for info in c["tasks"].values():
            first, last = info["transitions"][0], info["transitions"][-1]
            if last[0] in ("succeed", "failed"):
                spans.append((first[1], (last[1] - first[1]) / 1000))
    durations = [d for _, d in sorted(spans)]
    creates = {
        name: sum(c["creates_per_external_id"].values()) for name, c in counters.items()
    }
    both = set(counters["a"]["creates_per_external_id"]) & set(
        counters["b"]["creates_per_external_id"]
    )
    return {
        "tasks": TASKS,
        "detected": len(detected),
        "makespan_s": (max(detected.values()) / 1000 - start) if detected else None,
        "ideal_makespan_s": weighted_greedy(
            durations, [1] * len(durations), SLOTS * used
        ),
        "creates_per_account": creates,
        "external_ids_on_both_accounts": len(both),
        "answers_1303": sum(c["answers_1303"] for c in counters.values()),
        "max_in_flight": {
            name: c["max_in_flight_per_pool"].get(POOL, 0)
            for name, c in counters.items()
        },
    }


CONTENDERS = (("one account", ("a",)), ("two accounts", ACCOUNTS))


def run(wall_budget: float = 600.0) -> list[dict[str, Any]]:
    """Both contenders, a fresh loop each; their rows in table order."""
    rows = []
    with _inline_threadpool():
        for name, accounts in CONTENDERS:
            figures = run_virtual(_run(accounts, wall_budget))
            rows.append({"contender": name, "figures": figures})
            print(
                f"  {name:<13} makespan {figures['makespan_s'] or 0:8.0f} s"
                f"  1303 {figures['answers_1303']:4d}  wall {figures['wall_s']:5.1f} s",
                flush=True,
            )
    return rows


def _share(part: float | None, whole: float | None) -> float | None:
    return part / whole if part and whole else None


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f} %"


def _secs(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f} s"


def markdown(rows: list[dict[str, Any]]) -> str:
    """The table BENCHMARKS.md quotes, and the target."""
    head = (
        "| contender | tasks a / b | makespan | ideal | ideal / makespan | 1303 | "
        f"max in flight a / b ({POOL}, {SLOTS} each) | on both | outcome |"
    )
    lines = [head, "|" + " --- |" * 9]
    for row in rows:
        f = row["figures"]
        placed = f["tasks_per_account"]
        most = f["max_in_flight"]
        outcome = "done" if f["finished"] else f"not done: {f['why_not']}"
        lines.append(
            f"| {row['contender']} | {placed['a']} / {placed['b']} | "
            f"{_secs(f['makespan_s'])} | {_secs(f['ideal_makespan_s'])} | "
            f"{_pct(_share(f['ideal_makespan_s'], f['makespan_s']))} | "
            f"{f['answers_1303']} | {most['a']} / {most['b']} | "
            f"{f['external_ids_on_both_accounts']} | {outcome} |"
        )
    one, two = (r["figures"] for r in rows)
    ratio = _share(two["makespan_s"], one["makespan_s"])
    ideal = _share(two["ideal_makespan_s"], one["ideal_makespan_s"])
    over = [n for n, m in two["max_in_flight"].items() if m > SLOTS]
    on_both = two["external_ids_on_both_accounts"]
    lines += [
        "",
        "| target | measured | met |",
        "| --- | --- | --- |",
        (
            f"| two accounts ≤ {100 * TARGET:.0f} % of one account's makespan"
            f" (ideal: {_pct(ideal)}) | {_pct(ratio)}"
            f" | {met(ratio is not None and ratio <= TARGET)} |"
        ),
        (
            "| no pool over its size (simulators' maxima) | "
            f"{', '.join(over) or 'none over'} | {met(not over)} |"
        ),
        f"| no task created on both accounts | {on_both} | {met(on_both == 0)} |",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    rows = run(budget_from("python -m bench.accounts", argv))
    save("accounts", rows, markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
