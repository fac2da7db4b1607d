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

    python -m bench.serve_load [tasks] [seconds]
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
from klingmon.api import AsyncKlingClient, GenericRequest
from klingmon.domain import ACTIVE
from klingmon.engine import EngineSettings, EngineThread, Monitor
from klingmon.engine._monitor import new_task
from klingmon.store import Store
from klingmon.web import callback_token, create_app

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["serve_load_figures"]

ENDPOINT = "/v1/videos/text2video"
_SECRET = b"klingmon-bench-serve-load-secret-0123456789"
#: Never due: the callbacks' own tasks must cost the engine no polls.
_NEVER_MS = 4_000_000_000_000
_T0 = 1_780_000_000_000
_KEYS = ("sim-access-key", "sim-secret-key-for-the-benchmarks-0123")


def _callback_tasks(store: Store, db: Path, n: int, tag: str) -> list[tuple[str, str]]:
    """``n`` tasks Kling holds (never due for a poll); a processing callback each."""
    reqs = [
        new_task(
            GenericRequest(
                task_path=ENDPOINT,
                payload={"model_name": "kling-v2-master", "prompt": f"{tag} {i}"},
            )
        )
        for i in range(n)
    ]
    batch = store.tasks.create_batch(f"callbacks-{tag}", reqs, _T0)
    rows = store.tasks.tasks(batch.id)
    base = 8 * 10**17 + (batch.id << 20)
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "UPDATE tasks SET status='submitted', task_id=?, kling_created_ms=?,"
            " kling_updated_ms=?, submitted_ms=?, next_poll_ms=? WHERE id=?",
            [(str(base + r.id), _T0, _T0, _T0, _NEVER_MS, r.id) for r in rows],
        )
    out = []
    for r in rows:
        task = {
            "task_id": str(base + r.id),
            "task_status": "processing",
            "task_status_msg": "",
            "task_info": {"external_task_id": r.external_task_id},
            "task_result": {},
            "created_at": _T0,
            "updated_at": _T0 + 5000,
        }
        token = callback_token(_SECRET, r.external_task_id)
        out.append((f"/callbacks/kling/{token}", json.dumps(task)))
    return out


def _send(url: str, calls: list[tuple[str, str]], rate: float) -> list[float]:
    """Send ``calls`` at ``rate`` a second, one at a time; answer times in ms."""
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
    return times


async def _scenario(
    sim_url: str, sim_keys: tuple[str, str], tasks: int, seconds: float, rate: float
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="klingmon-bench-serve-") as tmp:
        db = Path(tmp) / "serve.db"
        store = Store.open(str(db))
        calls = _callback_tasks(store, db, int(seconds * rate), f"t{tasks}")
        client = AsyncKlingClient(
            base_url=sim_url, access_key=sim_keys[0], secret_key=sim_keys[1]
        )
        # The callbacks' own tasks hold slots too: room for the whole batch besides.
        settings = EngineSettings(
            slots=tasks + len(calls), rate=100.0, max_rate=200.0, idle_max=1.0, seed=1
        )
        monitor = Monitor(store=store, client=client, settings=settings)
        app = create_app(store, secret=_SECRET)
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
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
            await asyncio.sleep(0.01)
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
            times = await asyncio.wrap_future(pool.submit(_send, url, calls, rate))
        engine.stop()
        await engine.join()
        server.should_exit = True
        await serving
        store.close()
    return {
        "tasks": tasks,
        "active_while_measured": carried - len(calls),
        "callbacks": len(times),
        "p50_ms": percentile(times, 50),
        "p99_ms": percentile(times, 99),
        "max_ms": max(times),
    }


def serve_load_figures(
    tasks: int = 2000, seconds: float = 20.0, rate: float = 50.0
) -> dict[str, Any]:
    """Callback answer times with the engine idle, then carrying ``tasks``."""
    out: dict[str, Any] = {"rate_per_s": rate, "seconds": seconds}
    with _simulator(tasks) as sim_url:
        for name, n in (("idle", 0), ("carrying", tasks)):
            out[name] = asyncio.run(_scenario(sim_url, _KEYS, n, seconds, rate))
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
    figures = serve_load_figures(tasks, seconds)
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
