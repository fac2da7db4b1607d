"""``klingmon serve`` as a real process: callbacks, hooks, JSON API and /metrics."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import httpx
import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn

from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer, free_port

TASKS = 20


def _wait_for(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = check()
        except httpx.HTTPError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.mark.timeout(90)
def test_serve_runs_a_batch_on_callbacks_and_shows_metrics(tmp_path):
    """A batch finishes through callbacks; curl /metrics shows every metric family."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"clip {i}\n" for i in range(TASKS)))
    events = tmp_path / "events.jsonl"
    config = SimConfig(
        admin=True, seed=21, time_scale=300.0, faults=Faults(fail_rate=0.1)
    )
    db = tmp_path / "serve.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with SimServer(config) as server:
        env = cli_env(server, db)
        stored = klingmon(*FAST_FLAGS, "submit", str(prompts), "-b", "s", env=env)
        assert stored.returncode == 0, stored.stderr
        proc = spawn(
            *FAST_FLAGS,
            "serve",
            "--port",
            str(port),
            "--public-url",
            base,
            "--hook-command",
            f"cat >> {events}; echo >> {events}",
            env=env,
        )
        try:
            _wait_for(
                lambda: httpx.get(f"{base}/readyz").status_code == 200,
                timeout=20,
                what="readyz",
            )

            def done() -> dict | None:
                batch = httpx.get(f"{base}/api/batches/s").json()
                counts = batch["counts"]
                finished = counts.get("succeed", 0) + counts.get("failed", 0)
                return batch if finished == TASKS else None

            batch = _wait_for(done, timeout=60, what="the batch")
            metrics = subprocess.run(
                ["curl", "-sf", f"{base}/metrics"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        counters = server.sim.counters()
    assert proc.returncode == 0, err
    for needle in (
        'klingmon_tasks{status="succeed"}',
        'klingmon_api_requests_total{outcome="200",route="create"}',
        'klingmon_kling_limited_total{code="1303"}',
        'klingmon_callbacks_received_total{outcome="applied"}',
        'klingmon_detection_lag_seconds_bucket{le="1.0",source="callback"}',
        'klingmon_detection_lag_seconds_count{source="poll"}',
        "klingmon_queue_seconds_count",
        "klingmon_processing_seconds_count",
        "klingmon_outbox_backlog",
    ):
        assert needle in metrics, needle
    assert batch["statuses_via"]["callback"] >= 0.8 * TASKS
    with Store.open(str(db)) as store:
        tasks = store.tasks.tasks(store.tasks.batch("s").id)
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    assert {t.task_id: t.status.value for t in tasks} == truth
    lines = [json.loads(x) for x in events.read_text().splitlines() if x.strip()]
    finals = {
        x["task"]["task_id"]
        for x in lines
        if x["event"]["new_status"] in {"succeed", "failed"}
    }
    assert finals == set(truth)
