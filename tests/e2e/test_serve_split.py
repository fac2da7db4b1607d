"""``serve --no-engine`` and ``worker`` as two processes sharing one store."""

from __future__ import annotations

import signal
import time

import httpx
import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn, wait_listening

from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer, free_port

TASKS = 10


@pytest.mark.timeout(90)
def test_receiver_alone_and_a_worker_finish_a_batch_on_callbacks(tmp_path):
    """Callbacks reach the receiver process; the worker confirms and ends them all."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"clip {i}\n" for i in range(TASKS)))
    config = SimConfig(
        admin=True, seed=22, time_scale=300.0, slots=10, faults=Faults(fail_rate=0.1)
    )
    db = tmp_path / "split.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    flags = ("--slots", "10", *FAST_FLAGS)
    with SimServer(config) as server:
        env = cli_env(server, db, KLINGMON_PUBLIC_URL=base)
        assert (
            klingmon(*flags, "submit", str(prompts), "-b", "x", env=env).returncode == 0
        )
        receiver = spawn(*flags, "serve", "--no-engine", "--port", str(port), env=env)
        # The batch may finish in a second: callbacks must find the receiver up.
        wait_listening(port, receiver)
        worker = spawn(*flags, "worker", env=env)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    counts = httpx.get(f"{base}/api/batches/x").json()["counts"]
                except httpx.HTTPError:
                    counts = {}
                if counts.get("succeed", 0) + counts.get("failed", 0) == TASKS:
                    break
                assert time.monotonic() < deadline, counts
                time.sleep(0.1)
            metrics = httpx.get(f"{base}/metrics").text
        finally:
            for proc in (worker, receiver):
                proc.send_signal(signal.SIGTERM)
            _, worker_err = worker.communicate(timeout=20)
            _, receiver_err = receiver.communicate(timeout=20)
        counters = server.sim.counters()
    assert worker.returncode == 0, worker_err
    assert receiver.returncode == 0, receiver_err
    assert 'klingmon_callbacks_received_total{outcome="applied"}' in metrics
    with Store.open(str(db)) as store:
        batch = store.tasks.batch("x")
        tasks = store.tasks.tasks(batch.id)
        report = store.reports.report(batch.id)
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    assert {t.task_id: t.status.value for t in tasks} == truth
    # Callbacks raced with the worker's sweeps; most changes still came by callback
    # (processing applied, or a terminal hint that the worker then confirmed).
    via = report.statuses_via
    assert via.get("callback", 0) + via.get("callback_hint", 0) >= TASKS * 0.8
