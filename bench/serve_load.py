"""Callback answer times in one ``serve``-like process, engine idle vs carrying a batch.

``klingmon serve`` runs the receiver on uvicorn's loop and the engine on a loop of its
own in a thread (``EngineThread``), its store calls in worker threads: neither a store
call nor the engine's own CPU work holds a callback behind it. This measures it, as
serve runs them: uvicorn + the receiver app + the engine thread, over one SQLite
store, the simulator in a process of its own (Kling is elsewhere), and a steady stream
of unsigned "processing" callbacks from a client process, each a new fact the
receiver commits before answering. Once with the
engine idle, once while it carries a batch of ``tasks`` on the simulator: at
Kling's own pace (``--time-scale 1``), so that the batch is still in flight, polled
in list pages, when the callbacks come, once 90 % of it is; the callbacks' own tasks
get slots of their own.

The machine's own noise moves a p99 by several milliseconds from one run to the
next, and the first scenario of a process answers slower throughout (by 2 to 3 ms at
the median, measured). So an idle scenario runs first, not counted, each scenario
first answers :data:`WARMUP` callbacks it does not count either, and the scenarios
run in pairs, in the order idle, carrying, carrying, idle, …; the figures pool every
pair's answers (each scenario's own are under ``runs``).

    python -m bench.serve_load [tasks] [seconds] [pairs]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import uvicorn

from bench.workloads import percentile
from klingmon.api import GenericRequest
from klingmon.config import Secret, Settings
from klingmon.domain import ACTIVE
from klingmon.engine import EngineThread
from klingmon.engine._monitor import new_task
from klingmon.runtime import build_runtime
from klingmon.store import checkpoints
from klingmon.web import callback_token

if TYPE_CHECKING:
    from collections.abc import Iterator

    from klingmon.store import Store

__all__ = ["serve_load_figures"]

ENDPOINT = "/v1/videos/text2video"
#: The callbacks' own tasks: Kling (the simulator) does not hold them, so on the
#: batch's endpoint every sweep would page on looking for them, work that the
#: engine does only in this benchmark.
CALLBACK_ENDPOINT = "/v1/videos/image2video"
_URL_KEY = "klingmon-bench-serve-load-secret-0123456789"
#: Never due: the callbacks' own tasks cost the engine only what each unsigned
#: callback costs (a request that confirms it), in both scenarios alike.
_NEVER_MS = 4_000_000_000_000
#: How much the sender's priority is raised (when the OS allows it).
SENDER_PRIORITY = 10
#: Both scenarios start counting this long after the engine started, at least:
#: its first rounds read every active task once.
SETTLE_S = 3.0
_KEYS = ("sim-access-key", "sim-secret-key-for-the-benchmarks-0123")
#: Callbacks each scenario answers before it counts: the first answers of a
#: process build what later ones reuse (compiled statements, imports on first use).
WARMUP = 50


def _callback_tasks(store: Store, db: Path, n: int, tag: str) -> list[tuple[str, str]]:
    """``n`` tasks Kling holds (never due for a poll); a processing callback each.

    Submitted just now: older, they would be stuck by their learned durations, and
    the engine would flag each of them, in one scenario's window and not the other's.
    """
    t0 = int(time.time() * 1000)
    reqs = [
        new_task(
            GenericRequest(
                task_path=CALLBACK_ENDPOINT,
                payload={
                    "model_name": "kling-v2-master",
                    "image": "https://example.com/first-frame.png",
                    "prompt": f"{tag} {i}",
                },
            )
        )
        for i in range(n)
    ]
    batch = store.tasks.create_batch(f"callbacks-{tag}", reqs, t0)
    rows = store.tasks.tasks(batch.id)
    base = 8 * 10**17 + (batch.id << 20)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "UPDATE tasks SET status='submitted', task_id=?, kling_created_ms=?,"
            " kling_updated_ms=?, submitted_ms=?, next_poll_ms=? WHERE id=?",
            [(str(base + r.id), t0, t0, t0, _NEVER_MS, r.id) for r in rows],
        )
    out = []
    for r in rows:
        task = {
            "task_id": str(base + r.id),
            "task_status": "processing",
            "task_status_msg": "",
            "task_info": {"external_task_id": r.external_task_id},
            "task_result": {},
            "created_at": t0,
            "updated_at": t0 + 5000,
        }
        token = callback_token(_URL_KEY.encode(), r.external_task_id)
        out.append((f"/callbacks/kling/{token}", json.dumps(task)))
    return out


def _send(
    url: str, calls: list[tuple[str, str]], rate: float
) -> tuple[list[float], int]:
    """Send ``calls`` at ``rate`` a second, one at a time; answer times in ms, and
    the niceness the sender ran at.

    Kling's own machines do not share this one's two cores: the sender asks for a
    higher priority (only a superuser gets it), so that its own turn on a core does
    not count in the answer times it measures.
    """
    with contextlib.suppress(PermissionError):
        os.nice(-SENDER_PRIORITY)
    times: list[float] = []
    with httpx.Client(base_url=url) as http:
        start = time.perf_counter()
        for i, (path, body) in enumerate(calls):
            wait = start + i / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            t = time.perf_counter()
            answer = http.post(
                path, content=body, headers={"content-type": "application/json"}
            )
            times.append((time.perf_counter() - t) * 1000)
            if answer.status_code >= 300:
                raise RuntimeError(f"callback answered {answer.status_code}")
    return times, os.nice(0)


async def _scenario(
    sim_url: str, sim_keys: tuple[str, str], tasks: int, seconds: float, rate: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="klingmon-bench-serve-") as tmp:
        db = Path(tmp) / "serve.db"
        n_calls = WARMUP + int(seconds * rate)
        # The callbacks' own tasks hold slots too: room for the whole batch besides.
        settings = Settings(
            db=str(db),
            api_base=sim_url,
            access_key=sim_keys[0],
            secret_key=Secret(sim_keys[1]),
            slots=tasks + n_calls,
            rate=100.0,
            callback_secret=Secret(_URL_KEY),
        )
        runtime = build_runtime(
            settings, engine={"max_rate": 200.0, "idle_max": 1.0, "seed": 1}
        )
        store = runtime.store
        calls = _callback_tasks(store, db, n_calls, f"t{tasks}")
        client = runtime.client()
        monitor = runtime.monitor(client)
        app = runtime.web_app()
        # As `klingmon serve` runs them: off the answers' commits.
        checkpointer = checkpoints(runtime.store)
        checkpointer.start()
        sock = socket.socket()
        # Without it Nagle + delayed ACK add ~40 ms to an answer sent in two writes.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", access_log=False, http="h11")
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        if tasks:
            monitor.submit(
                [
                    GenericRequest(
                        task_path=ENDPOINT,
                        payload={"model_name": "kling-v2-master", "prompt": f"p{i}"},
                    )
                    for i in range(tasks)
                ],
                batch="carried",
            )
        # As `klingmon serve` runs it: on a loop of its own, in a thread.
        engine = EngineThread(monitor, client=client)
        engine.start()
        settled = time.monotonic() + SETTLE_S
        while not server.started or time.monotonic() < settled:  # noqa: ASYNC110
            await asyncio.sleep(0.01)  # uvicorn offers no event
        deadline = time.monotonic() + 120
        while tasks and time.monotonic() < deadline:  # until Kling holds 90 %
            counts = store.tasks.count_by_status(statuses=tuple(ACTIVE))
            if sum(counts.values()) - len(calls) >= tasks * 0.9:
                break
            await asyncio.sleep(0.5)
        carried = sum(store.tasks.count_by_status(statuses=tuple(ACTIVE)).values())
        # The sender is a process of its own, as Kling is: its work must not share
        # this process's interpreter lock with the server it measures.
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            sent = pool.submit(_send, url, calls, rate)
            times, niceness = await asyncio.wrap_future(sent)
            times = times[WARMUP:]
        engine.stop()
        await engine.join()
        server.should_exit = True
        await serving
        checkpointer.stop()
        runtime.close()
    return {
        "tasks": tasks,
        "active_while_measured": carried - len(calls),
        "sender_niceness": niceness,
        "times_ms": times,
    }


def _figures(times: list[float]) -> dict[str, float | None]:
    return {
        "callbacks": len(times),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times),
    }


def serve_load_figures(
    tasks: int = 2000, seconds: float = 20.0, rate: float = 50.0, pairs: int = 2
) -> dict[str, Any]:
    """Callback answer times with the engine idle and carrying ``tasks``: ``pairs``
    pairs of scenarios of ``seconds / pairs`` each, in the order idle, carrying,
    carrying, idle, …; the figures pool each kind's answers."""
    out: dict[str, Any] = {
        "rate_per_s": rate,
        "seconds": seconds,
        "pairs": pairs,
        "warmup": WARMUP,
    }
    kinds = (("idle", 0), ("carrying", tasks))
    pooled: dict[str, list[float]] = {name: [] for name, _ in kinds}
    active: list[int] = []
    runs: list[dict[str, Any]] = []
    # Each carrying scenario's batch gets room of its own: an earlier one's is
    # still running on Kling's clock.
    with _simulator(tasks * pairs) as sim_url:
        # Not counted: the process's first scenario answers slower throughout.
        asyncio.run(_scenario(sim_url, _KEYS, 0, seconds / pairs / 2, rate))
        for k in range(pairs):
            for name, n in kinds if k % 2 == 0 else kinds[::-1]:
                run = asyncio.run(_scenario(sim_url, _KEYS, n, seconds / pairs, rate))
                times = run.pop("times_ms")
                pooled[name] += times
                if n:
                    active.append(run["active_while_measured"])
                runs.append({"scenario": name, **run, **_figures(times)})
    for name, n in kinds:
        # The fewest tasks in flight while any carrying scenario was measured.
        held = min(active) if n else 0
        out[name] = {
            "tasks": n,
            "active_while_measured": held,
            **_figures(pooled[name]),
        }
    out["runs"] = runs
    return out


@contextlib.contextmanager
def _simulator(slots: int) -> Iterator[str]:
    """``klingmon sim`` in a process of its own (Kling is elsewhere): its CPU work
    must not share the measured process's interpreter lock."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [
        sys.executable, "-m", "klingmon", "sim", "--port", str(port),
        "--slots", str(slots), "--time-scale", "1", "--seed", "5",
        "--fail-rate", "0", "--access-key", _KEYS[0], "--secret-key", _KEYS[1],
    ]  # fmt: skip
    # Niced: on a 2-core machine Kling's CPU would otherwise take turns with the
    # measured process's, which it does not share in production.
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: os.nice(10),  # noqa: PLW1509 - no threads yet
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(url + "/", timeout=1.0)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    tasks = int(argv[0]) if argv else 2000
    seconds = float(argv[1]) if len(argv) > 1 else 20.0
    pairs = int(argv[2]) if len(argv) > 2 else 2
    figures = serve_load_figures(tasks, seconds, pairs=pairs)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
