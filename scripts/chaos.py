"""The chaos run: a batch under faults while the engine is killed again and again.

``python -m scripts.chaos`` (``make chaos``): 500 tasks, 20 SIGKILLs, 2 SIGTERMs;
``--tasks 120 --kills 5 --lost 1`` is the form CI runs. The simulator injects 10 %
5xx, 5 % 1302, 2 % creates whose connection drops after they were stored, 5 % of
callbacks dropped plus duplicates and reorders, and a few stuck tasks.

Two cases where money is at stake come on top. *Lost answers*: the answers of a few
creates are dropped, every answer is slowed, and the worker is SIGKILLed while it
waits to look them up; Kling finishes them before the next worker starts, which must
find them by their ``external_task_id`` finished and download them. *A restore*: the
store is copied early (SQLite's online backup, as an operator would) and put back
from that copy once half the batch has ended and Kling has finished what it holds;
the next worker re-sends what the copy still holds as queued, Kling refuses those as
duplicates (1201), and each must be adopted, not rejected and not paid for again.
At the end everything is checked against the simulator's own records, the files on
disk against its SHA-256, and the figures are printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from klingmon.domain import TERMINAL, TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer, free_port

if TYPE_CHECKING:
    from klingmon.store import DownloadRow, TaskRow

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


#: Creates whose answers one "lost answers" stop drops, and the latency meanwhile.
_LOST = 3
_LOST_LATENCY = 1.0


def _admin(server: SimServer, route: str, body: dict[str, Any]) -> None:
    answer = httpx.post(f"{server.url}/admin/{route}", json=body, timeout=10)
    answer.raise_for_status()


def _wait(what: str, ok: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while not ok():
        if time.monotonic() > deadline:
            print(f"chaos: gave up waiting for {what}", file=sys.stderr)
            return False
        time.sleep(0.05)
    return True


def _copy(source: Path, target: Path) -> None:
    """SQLite's online backup: a consistent copy of a live store, either way round."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def _lose_answers(server: SimServer, env: dict[str, str], hook_log: Path) -> None:
    """Drop a few create answers, SIGKILL the worker before its lookups return, and
    let Kling finish those tasks before anything else runs."""
    slow = dataclasses.asdict(FAULTS) | {"latency": _LOST_LATENCY}
    _admin(server, "faults", slow)
    drops = server.sim.counters()["requests"].get("create drop", 0)
    _admin(
        server,
        "script",
        {"route": "create", "status": 200, "drop": True, "times": _LOST},
    )
    worker = _worker(env, hook_log)
    _wait(
        "the dropped creates",
        lambda: (
            server.sim.counters()["requests"].get("create drop", 0) >= drops + _LOST
        ),
        within=30,
    )
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    _admin(server, "faults", dataclasses.asdict(FAULTS))
    _wait_for_kling(server)


def _wait_for_kling(server: SimServer) -> None:
    """Until Kling has finished every task it holds (but the stuck ones)."""

    def finished() -> bool:
        return all(
            t["status"] in {"succeed", "failed"} or t["stuck"]
            for t in server.sim.counters()["tasks"].values()
        )

    _wait("Kling to finish what it holds", finished, within=60)


def _restore_midway(
    server: SimServer, env: dict[str, str], hook_log: Path, backup: Path, tasks: int
) -> None:
    """Run until Kling has finished half the batch, SIGKILL, let Kling finish what
    it holds, and put the store back from ``backup``: what was sent since the copy
    is over at Kling, still queued in the copy, and no callback will come for it."""
    worker = _worker(env, hook_log)

    def half_done() -> bool:
        ended = [
            t
            for t in server.sim.counters()["tasks"].values()
            if t["status"] in {"succeed", "failed"}
        ]
        return len(ended) >= tasks // 2

    _wait("half the batch to end", half_done, within=120)
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=60)
    _wait_for_kling(server)
    _copy(backup, Path(env["KLINGMON_DB"]))


def _files_on_disk(root: Path) -> Counter[str]:
    return Counter(
        hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*.mp4")
        if p.is_file()
    )


def _settled(store: Store, truth: dict[str, str], stuck: set[str]) -> bool:
    """Kling ended every task but the stuck ones; all ended here, downloaded, told."""
    if any(TaskStatus(s) not in TERMINAL for t, s in truth.items() if t not in stuck):
        return False
    tasks = store.tasks.tasks()
    if any(t.task_id is None or t.status.value != truth.get(t.task_id) for t in tasks):
        return False
    done = sum(t.status == TaskStatus.SUCCEED for t in tasks)
    return (
        store.downloads.download_counts().get("done", 0) == done
        and not store.outbox.outbox_backlog()
    )


def _stop_again_and_again(  # noqa: PLR0917 - one scenario's parts
    server: SimServer,
    env: dict[str, str],
    hook_log: Path,
    stops: list[str],
    rng: random.Random,
    backup: Path | None,
) -> bool:
    """Start a worker and stop it (SIGKILL, SIGTERM, or around lost answers) once
    per entry of ``stops``; copy the store to ``backup`` while the first one runs.

    Returns whether the copy was made.
    """
    copied = False
    for how in stops:
        if how == "lost":
            _lose_answers(server, env, hook_log)
            continue
        worker = _worker(env, hook_log)
        time.sleep(rng.uniform(0.3, 2.5))
        if backup is not None and not copied:
            _copy(Path(env["KLINGMON_DB"]), backup)  # while the first worker runs
            copied = True
        worker.send_signal(signal.SIGKILL if how == "kill" else signal.SIGTERM)
        worker.wait(timeout=60)
    return copied


def _last_worker(
    server: SimServer, env: dict[str, str], hook_log: Path, tasks: int, settle: float
) -> tuple[list[TaskRow], list[DownloadRow]]:
    """Run one worker undisturbed until all is settled (or ``settle`` s pass);
    returns the store's tasks and downloads as it left them."""
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
            return store.tasks.tasks(), store.downloads.download_rows()
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)


def _hook_deliveries(
    hook_lines: list[str],
) -> tuple[dict[int, set[str]], dict[int, int], list[str]]:
    """The hook log's idempotency keys and delivery count per event, and the keys
    of deliveries a kill cut short."""
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
    return keys, deliveries, cut_short


def run_chaos(
    *,
    tasks: int = 500,
    kills: int = 20,
    terms: int = 2,
    lost: int = 2,
    restore: bool = True,
    seed: int = 1,
    settle: float = 300.0,
) -> dict[str, Any]:
    """Run the scenario; returns the figures and ``ok`` with every check's result.

    ``lost`` stops are "lost answers" SIGKILLs; ``restore`` copies the store while
    the first worker runs and puts the copy back once half the batch has ended.
    """
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
            stops = ["kill"] * kills + ["term"] * terms + ["lost"] * lost
            rng.shuffle(stops)
            backup = work / "backup.db" if restore else None
            copied = _stop_again_and_again(server, env, hook_log, stops, rng, backup)
            restores = 0
            if copied and backup is not None:
                _restore_midway(server, env, hook_log, backup, tasks)
                restores = 1
            rows, files = _last_worker(server, env, hook_log, tasks, settle)
            flagged = sum(t.stuck for t in rows)
        finally:
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(timeout=30)
        counters = server.sim.counters()
        shas = {f.id: server.sim.media_sha256(f.url) for f in files}
        hook_lines = hook_log.read_text().splitlines() if hook_log.exists() else []
        on_disk = _files_on_disk(work / "downloads")
        at_kling = Counter(
            server.sim.media_sha256(url)
            for t in counters["tasks"].values()
            if t["status"] == "succeed"
            for url in t["urls"]
        )
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    stuck_ids = {tid for tid, t in counters["tasks"].items() if t["stuck"]}
    creates = counters["creates_per_external_id"]
    duplicates = counters["duplicate_creates_per_external_id"]
    billed = Counter(t["external_task_id"] for t in counters["tasks"].values())
    keys, deliveries, cut_short = _hook_deliveries(hook_lines)
    succeeded = [t for t in rows if t.status == TaskStatus.SUCCEED]
    by_status: dict[str, int] = defaultdict(int)
    for t in rows:
        by_status[t.status.value] += 1
    requests = counters["requests"]
    checks = {
        "every task as the simulator ended it": len(rows) == tasks
        and {t.task_id: t.status.value for t in rows} == truth,
        # A create sent again from a restored copy is refused (1201), never billed.
        "exactly one create per external_task_id": len(billed) == tasks
        and set(billed.values()) == {1}
        and {e: n - duplicates.get(e, 0) for e, n in creates.items()} == dict(billed),
        "every success downloaded with the simulator's SHA-256": len(files)
        == len(succeeded)
        and all(f.status == "done" and f.sha256 == shas[f.id] for f in files)
        and on_disk == at_kling,
        "nothing rejected (a duplicate create is adopted)": by_status.get("rejected", 0)
        == 0,
        "every hook delivery carries its event's idempotency key": bool(keys)
        and all(k == {f"klingmon-event-{e}"} for e, k in keys.items())
        and all(k.startswith("klingmon-event-") for k in cut_short),
        "never more than the slots in flight": counters["max_in_flight"] <= 20,
    }
    if restore:
        checks["the store was put back from an older copy mid-run"] = restores == 1
    if lost:
        checks["every lost answer's create reached Kling"] = (
            requests.get("create drop", 0) >= lost * _LOST
        )
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
        "lost_answer_kills": lost,
        "restores": restores,
        "duplicate_creates_refused": sum(duplicates.values()),
        "files_on_disk": sum(on_disk.values()),
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
    parser.add_argument(
        "--lost", type=int, default=2, help="SIGKILLs around lost create answers"
    )
    parser.add_argument(
        "--no-restore",
        dest="restore",
        action="store_false",
        help="do not put the store back from an older copy mid-run",
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    figures = run_chaos(
        tasks=args.tasks,
        kills=args.kills,
        terms=args.terms,
        lost=args.lost,
        restore=args.restore,
        seed=args.seed,
    )
    print(json.dumps(figures, indent=2))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
