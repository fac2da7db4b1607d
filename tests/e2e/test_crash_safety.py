"""SIGKILL the real ``klingmon`` at random moments: nothing is lost or paid twice."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn

from klingmon.domain import TERMINAL
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

TASKS = 150
KILLS = 5


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("drop_rate", [0.0, 0.05], ids=["clean", "dropped-creates"])
def test_sigkill_during_submission_and_monitoring_loses_nothing(tmp_path, drop_rate):
    """After repeated SIGKILLs and a restart, every task ends; one create per id."""
    rng = random.Random(f"crash-{drop_rate}")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"clip {i}: a boat at sea\n" for i in range(TASKS)))
    config = SimConfig(
        admin=True,
        seed=11,
        time_scale=150.0,
        slots=40,
        faults=Faults(fail_rate=0.05, drop_create_rate=drop_rate),
    )
    db = tmp_path / "crash.db"
    with SimServer(config) as server:
        env = cli_env(server, db)
        flags = ("--slots", "40", *FAST_FLAGS)
        stored = klingmon(*flags, "submit", str(prompts), "--batch", "crash", env=env)
        assert stored.returncode == 0, stored.stderr
        for _ in range(KILLS):
            proc = spawn(*flags, "watch", "crash", "--json", env=env)
            time.sleep(rng.uniform(0.8, 3.0))
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=10)
            assert proc.returncode == -signal.SIGKILL
        final = klingmon(*flags, "watch", "crash", "--json", env=env, timeout=150)
        counters = server.sim.counters()
    assert final.returncode in {0, 5}, final.stderr
    summary = json.loads(final.stdout)
    assert summary["done"] is True
    with Store.open(str(db)) as store:
        batch = store.tasks.batch("crash")
        assert batch is not None
        tasks = store.tasks.tasks(batch.id)
    assert len(tasks) == TASKS
    assert all(t.status in TERMINAL for t in tasks)
    creates = counters["creates_per_external_id"]
    assert sorted(creates) == sorted(t.external_task_id for t in tasks)
    assert set(creates.values()) == {1}, {k: v for k, v in creates.items() if v != 1}
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    assert {t.task_id: t.status.value for t in tasks} == truth
    assert counters["max_in_flight"] <= 40


@pytest.mark.timeout(120)
def test_sigterm_stops_cleanly_and_a_restart_finishes(tmp_path):
    """SIGTERM: the engine stops within seconds, leaves no lease, and resumes later."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"clip {i}\n" for i in range(30)))
    config = SimConfig(admin=True, seed=12, time_scale=60.0, slots=10)
    db = tmp_path / "term.db"
    with SimServer(config) as server:
        env = cli_env(server, db)
        flags = ("--slots", "10", *FAST_FLAGS)
        assert (
            klingmon(*flags, "submit", str(prompts), "-b", "t", env=env).returncode == 0
        )
        proc = spawn(*flags, "watch", "t", "--json", env=env)
        deadline = time.monotonic() + 30
        with Store.open(str(db)) as store:
            while sum(1 for t in store.tasks.tasks() if t.task_id) < 10:
                assert time.monotonic() < deadline, "nothing was submitted"
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
            assert proc.returncode == 130, err
            assert json.loads(out)["done"] is False
            assert store.fleet.lease_owners() == set()
        final = klingmon(*flags, "watch", "t", "--json", env=env, timeout=100)
        counters = server.sim.counters()
    assert json.loads(final.stdout)["done"] is True
    assert set(counters["creates_per_external_id"].values()) == {1}
