"""Real-time figures on loopback, each beside a ceiling measured in the same run.

- ``store_figures``: a SQLite store holding 1,000,000 finished tasks (bulk-inserted
  with the driver) plus 1,000 active ones due now: time to ``claim_due`` and ``report``
  (everything, the big batch, the small one).
- ``carry_figures``: CPU seconds and peak RSS of a process that carries 10,000 tasks
  from submit to done with the real engine, over HTTP to a ``SimServer`` at a high
  time scale in another process.
- ``ingest_figures``: callbacks ingested per second, each a durable commit, by the
  receiver (``klingmon.web.create_app`` under uvicorn), against a no-op endpoint on
  the same stack (FastAPI + uvicorn) under the same load generator (``wrk``, or a
  Python generator when ``wrk`` is absent).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from klingmon.api import GenericRequest
from klingmon.engine import new_task
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer
from klingmon.web import callback_token

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["carry_figures", "ingest_figures", "store_figures"]

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT = "/v1/videos/text2video"
_T0 = 1_779_955_200_000


def _insert_tasks(  # noqa: PLR0917 - a private bulk helper
    db: Path, batch_id: int, start_seq: int, n: int, status: str, rng: random.Random
) -> None:
    """Bulk rows straight through sqlite3: the store's own writes are not timed."""
    body = json.dumps({"model_name": "kling-v2-master", "duration": "5"})
    rows = []
    for i in range(start_seq, start_seq + n):
        created = _T0 + i * 10
        submitted = created + rng.randint(100, 2000)
        processing = submitted + rng.randint(500, 30_000)
        finished = processing + rng.randint(30_000, 300_000)
        failed = status == "succeed" and rng.random() < 0.03
        active = status != "succeed"
        rows.append(
            (
                batch_id,
                i,
                ENDPOINT,
                body,
                f"prompt {i}",
                "kling-v2-master",
                "std",
                "5",
                f"km-bench-{batch_id}-{i}",
                str(800_000_000_000_000_000 + i),
                status if active else ("failed" if failed else "succeed"),
                "Internal generation error" if failed else None,
                submitted,
                processing if not active else submitted,
                created,
                submitted,
                None if active else processing,
                None if active else finished,
                processing,
                _T0 if active else None,
                None if active or failed else 1.0,
                "sweep",
            )
        )
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO tasks (batch_id, seq, endpoint, body, prompt, model_name,"
            " mode, duration, external_task_id, task_id, status, status_msg,"
            " kling_created_ms, kling_updated_ms, created_ms, submitted_ms,"
            " processing_ms, finished_ms, phase_ms, next_poll_ms, units, learned_via,"
            " submit_attempts, polls, watch_timeout, stuck)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,3,0,0)",
            rows,
        )


def store_figures(finished: int = 1_000_000, active: int = 1_000) -> dict[str, Any]:
    """Seconds to claim due work and to build ``report`` on a big SQLite store."""

    with tempfile.TemporaryDirectory(prefix="klingmon-bench-store-") as tmp:
        db = Path(tmp) / "big.db"
        store = Store.open(str(db))
        store.tasks.create_batch("big", [], _T0)
        store.tasks.create_batch("live", [], _T0)
        [big, live] = sorted(store.tasks.batches(), key=lambda b: b.id)
        rng = random.Random(3)
        t = time.perf_counter()
        chunk = 100_000
        for start in range(0, finished, chunk):
            _insert_tasks(
                db, big.id, start, min(chunk, finished - start), "succeed", rng
            )
        _insert_tasks(db, live.id, finished, active, "processing", rng)
        with sqlite3.connect(db) as conn:
            conn.execute("ANALYZE")
        fill = time.perf_counter() - t
        now_ms = _T0 + 10_000
        figures: dict[str, Any] = {"tasks": finished + active, "fill_s": fill}
        t = time.perf_counter()
        claimed = store.watch.claim_due("bench-worker", now_ms, 120_000, 1000)
        figures["claim_due_s"] = time.perf_counter() - t
        figures["claimed"] = len(claimed)
        t = time.perf_counter()
        report = store.reports.report()
        figures["report_s"] = time.perf_counter() - t
        t = time.perf_counter()
        store.reports.report(big.id)
        figures["report_batch_s"] = time.perf_counter() - t
        # A small batch in a big store (the dashboard's page): it must not walk it all.
        t = time.perf_counter()
        store.reports.report(live.id)
        figures["report_small_batch_s"] = time.perf_counter() - t
        figures["report_total"] = sum(report.by_status.values())
        store.close()
        figures["db_mb"] = db.stat().st_size / 1e6
    return figures


# -- 10,000 tasks carried by one engine process ------------------------------------


def carry_figures(
    tasks: int = 10_000, slots: int = 500, time_scale: float = 200.0
) -> dict[str, Any]:
    """The engine process's CPU and peak RSS to carry ``tasks`` to done."""

    config = SimConfig(
        seed=11,
        slots=slots,
        time_scale=time_scale,
        admin=True,
        faults=Faults(),
        secret_key="sim-secret-key-for-the-benchmarks-0123",  # noqa: S106 - simulated
    )
    with (
        tempfile.TemporaryDirectory(prefix="klingmon-bench-carry-") as tmp,
        SimServer(config) as server,
    ):
        db = Path(tmp) / "carry.db"
        downloads = Path(tmp) / "downloads"
        cmd = [sys.executable, "-m", "bench.carry_child", server.url, str(db)]
        cmd += [str(downloads), str(tasks), str(slots), str(time_scale)]
        t = time.perf_counter()
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=400, check=False, cwd=ROOT
        )
        wall = time.perf_counter() - t
        counters = server.sim.counters()
        files = sum(1 for _ in downloads.rglob("*.mp4")) if downloads.exists() else 0
    if done.returncode != 0:
        return {"error": done.stderr[-800:], "wall_s": wall}
    out: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    routes = counters["requests_by_route"]
    out.update(
        tasks=tasks,
        slots=slots,
        time_scale=time_scale,
        requests=routes,
        answers_1303=counters["answers_1303"],
        files_downloaded=files,
    )
    return out


# -- callbacks ingested per second -------------------------------------------------

_NOOP_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
app = FastAPI()
@app.post("/callbacks/kling/{token}")
async def callback(token: str, request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "ok"})
"""

_RECEIVER_APP = """
import logging, os
logging.disable(logging.WARNING)
from klingmon.store import Store, checkpoints
from klingmon.web import create_app
secret = bytes.fromhex(os.environ["BENCH_SECRET"])
store = Store.open(os.environ["BENCH_DB"])
checkpoints(store).start()  # as `klingmon serve` runs them: off the commits
app = create_app(store, secret=secret)
"""


def _serve(
    app_code: str, env: dict[str, str], tmp: Path
) -> tuple[subprocess.Popen[bytes], int]:
    """uvicorn in its own process (one worker) on a free port."""

    mod = tmp / f"benchapp_{random.randrange(10**9)}.py"
    mod.write_text(app_code)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "uvicorn", f"{mod.stem}:app", "--port", str(port)]
    cmd += ["--log-level", "warning", "--no-access-log", "--http", "h11"]
    proc = subprocess.Popen(
        cmd, cwd=tmp, env={**os.environ, **env, "PYTHONPATH": str(tmp)}
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")


def _wrk_script(requests: list[tuple[str, str]], path: Path) -> None:
    lines = ["local reqs = {"]
    for url_path, body in requests:
        lines.append(f"  {{{json.dumps(url_path)}, {json.dumps(body)}}},")
    lines.append("}")
    lines.append(
        """
local i = 0
request = function()
  i = i + 1
  local r = reqs[((i - 1) % #reqs) + 1]
  return wrk.format("POST", r[1], {["Content-Type"] = "application/json"}, r[2])
end
"""
    )
    path.write_text("\n".join(lines))


def _run_wrk(port: int, script: Path, seconds: int, connections: int) -> dict[str, Any]:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    rps = 0.0
    non2xx = 0
    total = 0
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            rps = float(line.split()[1])
        if "Non-2xx" in line:
            non2xx = int(line.split()[-1])
        if "requests in" in line:
            total = int(line.split()[0])
    return {"rps": rps, "requests": total, "non_2xx": non2xx}


def _run_python_generator(
    port: int, requests: list[tuple[str, str]], seconds: int, connections: int
) -> dict[str, Any]:

    async def main() -> dict[str, Any]:
        done = 0
        bad = 0
        stop = time.perf_counter() + seconds
        counter = iter(range(10**9))
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", limits=limits
        ) as client:

            async def worker() -> None:
                nonlocal done, bad
                while time.perf_counter() < stop:
                    path, body = requests[next(counter) % len(requests)]
                    r = await client.post(
                        path, content=body, headers={"Content-Type": "application/json"}
                    )
                    done += 1
                    bad += r.status_code >= 300

            t = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(connections)))
            elapsed = time.perf_counter() - t
        return {"rps": done / elapsed, "requests": done, "non_2xx": bad}

    return asyncio.run(main())


def ingest_figures(seconds: int = 5, connections: int = 32) -> dict[str, Any]:
    """Receiver vs no-op, same server stack, same generator; distinct tasks each."""

    secret = os.urandom(32)
    n = 60_000 if shutil.which("wrk") else 20_000
    with tempfile.TemporaryDirectory(prefix="klingmon-bench-ingest-") as tmp_name:
        tmp = Path(tmp_name)
        db = tmp / "ingest.db"
        store = Store.open(str(db))
        reqs = [
            new_task(
                GenericRequest(
                    task_path=ENDPOINT,
                    payload={"model_name": "kling-v2-master", "prompt": f"p{i}"},
                )
            )
            for i in range(n)
        ]
        batch = store.tasks.create_batch("ingest", reqs, _T0)
        rows = store.tasks.tasks(batch.id)
        # Kling holds them (submitted): each callback says "processing", a new fact
        # that the receiver commits (status, event, outbox) before answering.
        with sqlite3.connect(db) as conn:
            conn.executemany(
                "UPDATE tasks SET status='submitted', task_id=?, kling_created_ms=?,"
                " kling_updated_ms=?, submitted_ms=? WHERE id=?",
                [(str(9 * 10**17 + r.id), _T0, _T0, _T0, r.id) for r in rows],
            )
        store.close()
        requests = []
        for r in rows:
            task = {
                "task_id": str(9 * 10**17 + r.id),
                "task_status": "processing",
                "task_status_msg": "",
                "task_info": {"external_task_id": r.external_task_id},
                "task_result": {},
                "created_at": _T0,
                "updated_at": _T0 + 5000,
            }
            token = callback_token(secret, r.external_task_id)
            requests.append((f"/callbacks/kling/{token}", json.dumps(task)))
        figures: dict[str, Any] = {
            "generator": "wrk" if shutil.which("wrk") else "python-httpx",
            "seconds": seconds,
            "connections": connections,
            "server": "uvicorn (h11, 1 worker) + FastAPI",
        }
        script = tmp / "callbacks.lua"
        if shutil.which("wrk"):
            _wrk_script(requests, script)
        for name, code, env in (
            ("noop", _NOOP_APP, {}),
            (
                "receiver",
                _RECEIVER_APP,
                {"BENCH_SECRET": secret.hex(), "BENCH_DB": str(db)},
            ),
        ):
            proc, port = _serve(code, env, tmp)
            try:
                if shutil.which("wrk"):
                    figures[name] = _run_wrk(port, script, seconds, connections)
                else:
                    figures[name] = _run_python_generator(
                        port, requests, seconds, connections
                    )
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        with sqlite3.connect(db) as conn:
            figures["receiver"]["committed"] = conn.execute(
                "SELECT count(*) FROM tasks WHERE status='processing'"
            ).fetchone()[0]
        if figures["receiver"]["requests"] > n:
            figures["note"] = "more requests than tasks: repeats were no-op updates"
        figures["ratio"] = figures["receiver"]["rps"] / figures["noop"]["rps"]
    return figures


if __name__ == "__main__":
    figures: dict[str, Callable[[], dict[str, Any]]] = {
        "store": store_figures,
        "carry": carry_figures,
        "ingest": ingest_figures,
    }
    print(json.dumps(figures[sys.argv[1]](), indent=2, default=str))
