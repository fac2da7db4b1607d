"""Real time: one worker on SQLite against three workers sharing PostgreSQL.

Each contender carries the same batch on a fresh simulator (same seed, same slots) from
``klingmon submit`` to every task terminal and every result downloaded, with the real
``klingmon worker`` processes. Throughput is tasks per wall second; requests per task
are the simulator's own counts.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from klingmon.domain import TERMINAL, TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

__all__ = ["fleet_figures"]

PG_URL = os.environ.get(
    "KLINGMON_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Polls paced for a simulator 600 times faster than Kling, and the same request budget
# for both contenders (50 a second, the engine's ceiling, split among live workers).
_FLAGS = (
    *("--target-lag", "0.2", "--min-interval", "0.05", "--max-interval", "0.5"),
    *("--rate", "50"),
)


def _env(server: SimServer, db: str, downloads: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("KLING_", "KLINGMON_"))
    }
    env.update(
        KLING_API_BASE=server.url,
        KLING_ACCESS_KEY=server.sim.config.access_key,
        KLING_SECRET_KEY=server.sim.config.secret_key,
        KLINGMON_DB=db,
        KLINGMON_DOWNLOAD_DIR=str(downloads),
        KLINGMON_DOWNLOAD_ORIGINS=server.url,
    )
    return env


def _done(store: Store) -> bool:
    tasks = store.tasks.tasks()
    succeeded = sum(t.status == TaskStatus.SUCCEED for t in tasks)
    return all(t.status in TERMINAL for t in tasks) and (
        store.downloads.download_counts().get("done", 0) == succeeded
    )


def _carry(db: str, workers: int, tasks: int, slots: int, work: Path) -> dict[str, Any]:
    prompts = work / "prompts.txt"
    prompts.write_text("".join(f"fleet {i}: a lighthouse\n" for i in range(tasks)))
    config = SimConfig(
        admin=True,
        seed=17,
        time_scale=600.0,
        slots=slots,
        faults=Faults(fail_rate=0.03),
    )
    with SimServer(config) as server:
        env = _env(server, db, work / "downloads")
        cmd = [sys.executable, "-m", "klingmon"]
        subprocess.run(
            [*cmd, "submit", str(prompts), "-b", "fleet"],
            env=env,
            check=True,
            capture_output=True,
        )
        started = time.perf_counter()
        procs = [
            subprocess.Popen(
                [*cmd, "--slots", str(slots), *_FLAGS, "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(workers)
        ]
        try:
            with Store.open(db) as store:
                deadline = started + 600
                while not _done(store):
                    if time.perf_counter() > deadline:
                        return {"error": "did not finish in 600 s"}
                    time.sleep(0.1)
            wall = time.perf_counter() - started
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=30)
        counters = server.sim.counters()
    routes = counters["requests_by_route"]
    return {
        "workers": workers,
        "tasks": tasks,
        "slots": slots,
        "wall_s": wall,
        "tasks_per_s": tasks / wall,
        "queries_per_task": (routes.get("get", 0) + routes.get("list", 0)) / tasks,
        "requests_per_task": sum(routes.get(r, 0) for r in ("create", "get", "list"))
        / tasks,
        "max_in_flight": counters["max_in_flight"],
        "creates_once": set(counters["creates_per_external_id"].values()) == {1},
    }


def fleet_figures(tasks: int = 600, slots: int = 20) -> dict[str, Any]:
    """Both contenders, one after the other, on the same workload."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "sqlite"
        work.mkdir()
        out["sqlite_1"] = _carry(str(work / "k.db"), 1, tasks, slots, work)
        admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        try:
            with admin.connect():
                pass
        except sa.exc.OperationalError as exc:
            out["postgres_3"] = {"error": f"PostgreSQL unreachable: {exc.orig}"}
            return out
        schema = f"km_bench_{secrets.token_hex(4)}"
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = sa.make_url(PG_URL).update_query_dict(
            {"options": f"-csearch_path={schema}"}
        )
        work = Path(tmp) / "postgres"
        work.mkdir()
        try:
            out["postgres_3"] = _carry(
                url.render_as_string(hide_password=False), 3, tasks, slots, work
            )
        finally:
            with admin.begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            admin.dispose()
    return out
