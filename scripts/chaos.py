"""The chaos run: a batch under faults while the engine is killed again and again.

``python -m scripts.chaos`` (``make chaos``): 500 tasks, 20 SIGKILLs, 2 SIGTERMs;
``--tasks 150 --kills 6`` is the form CI runs. The simulator injects 10 % 5xx, 5 %
1302, 2 % creates whose connection drops after they were stored, 5 % of callbacks
dropped plus duplicates and reorders, and a few stuck tasks. At the end everything is
checked against the simulator's own records and the figures are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from klingmon.api._models import TERMINAL, TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer, free_port

__all__ = ["FAULTS", "run_chaos"]

FAULTS = Faults(
    fail_rate=0.03,
    stuck_rate=0.01,
    error_5xx_rate=0.10,
    rate_limit_rate=0.05,
    drop_create_rate=0.02,
    callback_drop_rate=0.05,
    callback_duplicate_rate=0.05,
    callback_reorder_rate=0.05,
)
_FLAGS = (
    *("--slots", "20", "--rate", "50"),
    *("--target-lag", "0.2", "--min-interval", "0.05", "--max-interval", "0.5"),
)
_CMD = (sys.executable, "-m", "klingmon")


def _env(server: SimServer, work: Path, public_url: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KLING_", "KLINGMON_"))
    }
    env.update(
        KLING_API_BASE=server.url,
        KLING_ACCESS_KEY=server.sim.config.access_key,
        KLING_SECRET_KEY=server.sim.config.secret_key,
        KLINGMON_DB=str(work / "chaos.db"),
        KLINGMON_DOWNLOAD_DIR=str(work / "downloads"),
        KLINGMON_DOWNLOAD_ORIGINS=server.url,
        KLINGMON_PUBLIC_URL=public_url,
    )
    return env


def _worker(env: dict[str, str], hook_log: Path) -> subprocess.Popen[bytes]:
    hook = (
        "line=\"$KLINGMON_IDEMPOTENCY_KEY $(cat | tr -d '\\n')\"; "
        f"printf '%s\\n' \"$line\" >> {hook_log}"
    )
    return subprocess.Popen(
        [*_CMD, *_FLAGS, "worker", "--hook-command", hook],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _settled(store: Store, truth: dict[str, str], stuck: set[str]) -> bool:
    """Kling ended every task but the stuck ones; all ended here, downloaded, told."""
    if any(TaskStatus(s) not in TERMINAL for t, s in truth.items() if t not in stuck):
        return False
    tasks = store.tasks()
    if any(t.task_id is None or t.status.value != truth.get(t.task_id) for t in tasks):
        return False
    done = sum(t.status == TaskStatus.SUCCEED for t in tasks)
    return store.download_counts().get("done", 0) == done and not store.outbox_backlog()


def run_chaos(
    *,
    tasks: int = 500,
    kills: int = 20,
    terms: int = 2,
    seed: int = 1,
    settle: float = 300.0,
) -> dict[str, Any]:
    """Run the scenario; returns the figures and ``ok`` with every check's result."""
    rng = random.Random(seed)
    config = SimConfig(admin=True, seed=seed, time_scale=300.0, slots=20, faults=FAULTS)
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp, SimServer(config) as server:
        work = Path(tmp)
        prompts = work / "prompts.txt"
        prompts.write_text(
            "".join(f"chaos {i}: rain on a window\n" for i in range(tasks))
        )
        hook_log = work / "hooks.log"
        port = free_port()
        env = _env(server, work, f"http://127.0.0.1:{port}")
        receiver = subprocess.Popen(
            [*_CMD, "serve", "--no-engine", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            subprocess.run(
                [*_CMD, "submit", str(prompts), "-b", "chaos"],
                env=env,
                check=True,
                capture_output=True,
            )
            stops = ["kill"] * kills + ["term"] * terms
            rng.shuffle(stops)
            for how in stops:
                worker = _worker(env, hook_log)
                time.sleep(rng.uniform(0.3, 2.5))
                worker.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
                worker.wait(timeout=60)
            worker = _worker(env, hook_log)
            try:
                with Store.open(env["KLINGMON_DB"]) as store:
                    deadline = time.monotonic() + settle
                    while True:
                        seen = server.sim.counters()["tasks"]
                        truth = {tid: t["status"] for tid, t in seen.items()}
                        stuck = {tid for tid, t in seen.items() if t["stuck"]}
                        if len(truth) == tasks and _settled(store, truth, stuck):
                            break
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.25)
                    rows = store.tasks()
                    files = store.download_rows()
                    flagged = sum(t.stuck for t in rows)
            finally:
                worker.send_signal(signal.SIGTERM)
                worker.wait(timeout=60)
        finally:
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(timeout=30)
        counters = server.sim.counters()
        shas = {f.id: server.sim.media_sha256(f.url) for f in files}
        hook_lines = hook_log.read_text().splitlines() if hook_log.exists() else []
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    stuck_ids = {tid for tid, t in counters["tasks"].items() if t["stuck"]}
    creates = counters["creates_per_external_id"]
    keys: dict[int, set[str]] = defaultdict(set)
    deliveries: dict[int, int] = defaultdict(int)
    cut_short: list[str] = []
    for line in hook_lines:
        key, _, body = line.partition(" ")
        try:
            event_id = json.loads(body)["event"]["id"]
        except ValueError:
            # The worker was killed while it fed the hook: no event reached it, the
            # delivery was never acknowledged, and it is made again later.
            cut_short.append(key)
            continue
        keys[event_id].add(key)
        deliveries[event_id] += 1
    succeeded = [t for t in rows if t.status == TaskStatus.SUCCEED]
    by_status: dict[str, int] = defaultdict(int)
    for t in rows:
        by_status[t.status.value] += 1
    checks = {
        "every task as the simulator ended it": len(rows) == tasks
        and {t.task_id: t.status.value for t in rows} == truth,
        "exactly one create per external_task_id": len(creates) == tasks
        and set(creates.values()) == {1},
        "every success downloaded with the simulator's SHA-256": len(files)
        == len(succeeded)
        and all(f.status == "done" and f.sha256 == shas[f.id] for f in files),
        "every hook delivery carries its event's idempotency key": bool(keys)
        and all(k == {f"klingmon-event-{e}"} for e, k in keys.items())
        and all(k.startswith("klingmon-event-") for k in cut_short),
        "never more than the slots in flight": counters["max_in_flight"] <= 20,
    }
    requests = counters["requests"]
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "tasks": tasks,
        "sigkills": kills,
        "sigterms": terms,
        "wall_s": round(time.monotonic() - started, 1),
        "by_status": dict(by_status),
        "stuck_in_kling": len(stuck_ids),
        "stuck_flagged": flagged,
        "creates": sum(creates.values()),
        "answers_5xx": sum(n for k, n in requests.items() if " 5" in k),
        "answers_1302": counters["answers_1302"],
        "dropped_creates": requests.get("create drop", 0),
        "callbacks": counters.get("callbacks", {}),
        "files_downloaded": len(files),
        "hook_deliveries": len(hook_lines),
        "hook_deliveries_cut_short_by_a_kill": len(cut_short),
        "events_delivered_more_than_once": sum(1 for n in deliveries.values() if n > 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.chaos", description=__doc__
    )
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--terms", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    figures = run_chaos(
        tasks=args.tasks, kills=args.kills, terms=args.terms, seed=args.seed
    )
    print(json.dumps(figures, indent=2))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
