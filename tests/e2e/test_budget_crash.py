"""A budget under SIGKILLs: the simulator's charge ledger never passes the cap.

200 one-unit tasks, a cap of 60 tasks' worth: the real ``klingmon`` is killed
while it sends; the batch ends ``paused: budget`` with the rest still queued, and
``resume`` with a higher cap finishes it. The same with three workers on
PostgreSQL, one of them killed. The reservation is part of the slot claim's
transaction, so no crash and no second worker can send past the cap.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn, stop_all
from test_fleet_postgres import pg_url

from klingmon.domain import IN_FLIGHT, TERMINAL, BatchState, TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from pathlib import Path

#: The PostgreSQL fixture of the fleet test: a fresh schema, dropped afterwards.
__all__ = ["pg_url"]

TASKS = 120
CAP = 60  # kling-v1 std 5 s: one unit a task, by the shipped table and the simulator
KILLS = 3


def _config(seed: int) -> SimConfig:
    return SimConfig(
        admin=True,
        seed=seed,
        time_scale=600.0,
        slots=20,
        faults=Faults(fail_rate=0.05),
    )


def _prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("".join(f"clip {i}: a kite over a beach\n" for i in range(TASKS)))
    return path


def _committed(server: SimServer) -> float:
    """Units the simulator charges for every task created so far (future included)."""
    return float(server.sim.counters()["units_committed"])


def _check_end(server: SimServer, store: Store, name: str) -> None:
    """Paused by its budget, the cap held, the rest queued, one create per id."""
    batch = store.tasks.batch(name)
    assert batch is not None
    assert batch.state == BatchState.PAUSED_BUDGET
    tasks = store.tasks.tasks(batch.id)
    queued = [t for t in tasks if t.status == TaskStatus.QUEUED]
    assert queued
    assert all(t.status in TERMINAL for t in tasks if t.status != TaskStatus.QUEUED)
    counters = server.sim.counters()
    assert counters["units_committed"] <= CAP
    assert counters["units_charged"] <= CAP
    creates = counters["creates_per_external_id"]
    assert set(creates.values()) == {1}
    assert len(creates) == TASKS - len(queued)
    assert store.spend.summary(batch.id).counted <= CAP


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_budget_holds_through_sigkills_and_resume_finishes(tmp_path):
    """SIGKILLs while sending: never past the cap, paused, then resumed to the end."""
    rng = random.Random("budget-crash")
    db = tmp_path / "budget.db"
    with SimServer(_config(41)) as server:
        env = cli_env(server, db)
        flags = ("--slots", "20", *FAST_FLAGS)
        stored = klingmon(
            *flags,
            "submit",
            str(_prompts(tmp_path)),
            "-b",
            "capped",
            "--max-units",
            str(CAP),
            env=env,
        )
        assert stored.returncode == 0, stored.stderr
        for _ in range(KILLS):
            proc = spawn(*flags, "watch", "capped", "--json", env=env)
            time.sleep(rng.uniform(0.3, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
            assert _committed(server) <= CAP
        held = klingmon(*flags, "watch", "capped", "--json", env=env, timeout=120)
        assert held.returncode == 0, held.stderr
        summary = json.loads(held.stdout)
        assert (summary["outcome"], summary["state"]) == ("held", "paused_budget")
        with Store.open(str(db)) as store:
            _check_end(server, store, "capped")
        report = json.loads(klingmon("report", "capped", "--json", env=env).stdout)
        assert report["spend"]["state"] == "paused_budget"
        assert report["spend"]["charged"] <= CAP
        assert report["spend"]["quoted"] == TASKS
        resumed = klingmon("resume", "capped", "--max-units", "1000", env=env)
        assert resumed.returncode == 0, resumed.stderr
        final = klingmon(*flags, "watch", "capped", "--json", env=env, timeout=120)
        counters = server.sim.counters()
    assert final.returncode in {0, 5}, final.stderr
    assert json.loads(final.stdout)["done"] is True
    assert set(counters["creates_per_external_id"].values()) == {1}
    assert len(counters["creates_per_external_id"]) == TASKS


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "klingmon", "--slots", "20", *FAST_FLAGS, "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def _until(what: str, check, within: float = 120.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _settled(store: Store, name: str) -> bool:
    """Paused, with nothing of it in flight (what was sent has ended) nor leased to
    be sent (a claim made just before the pause sends what it admitted)."""
    batch = store.tasks.batch(name)
    assert batch is not None
    if batch.state != BatchState.PAUSED_BUDGET:
        return False
    tasks = store.tasks.tasks(batch.id)
    return not any(
        t.status in IN_FLIGHT
        or (t.status == TaskStatus.QUEUED and t.lease_owner is not None)
        for t in tasks
    )


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_three_workers_on_postgres_never_pass_the_cap(pg_url, tmp_path):
    """Three workers, one SIGKILLed and restarted: the cap holds across the fleet."""
    procs: list[subprocess.Popen[bytes]] = []
    with SimServer(_config(43)) as server:
        env = cli_env(server, tmp_path / "unused.db")
        env["KLINGMON_DB"] = pg_url
        stored = klingmon(
            "submit",
            str(_prompts(tmp_path)),
            "-b",
            "fleet",
            "--max-units",
            str(CAP),
            env=env,
        )
        assert stored.returncode == 0, stored.stderr
        try:
            procs = [_worker(env, tmp_path / f"worker{n}.log") for n in range(3)]
            _until("a first create", lambda: _committed(server) > 0, 60)
            procs[0].send_signal(signal.SIGKILL)
            procs[0].wait(timeout=10)
            procs[0] = _worker(env, tmp_path / "worker0.log")
            with Store.open(pg_url) as store:
                _until("the pause", lambda: _settled(store, "fleet"))
                _check_end(server, store, "fleet")
                resumed = klingmon("resume", "fleet", "--max-units", "1000", env=env)
                assert resumed.returncode == 0, resumed.stderr

                def finished() -> bool:
                    counts = store.tasks.count_by_status()
                    return sum(counts.values()) == sum(
                        n for s, n in counts.items() if s in TERMINAL
                    )

                _until("every task ended", finished)
            counters = server.sim.counters()
        finally:
            stop_all(procs)
    assert set(counters["creates_per_external_id"].values()) == {1}
    assert len(counters["creates_per_external_id"]) == TASKS
    assert counters["max_in_flight"] <= 20
