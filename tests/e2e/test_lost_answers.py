"""Creates whose answers were lost, then a SIGKILL: every finished task comes home."""

from __future__ import annotations

import json
import signal

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn
from money_support import (
    admin,
    billed_per_external_id,
    files_on_disk,
    results_at_kling,
    wait_for,
)

from klingmon.domain import TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer


@pytest.mark.timeout(90)
def test_lost_creates_finished_at_kling_before_restart_are_downloaded(tmp_path):
    """Three creates dropped, watch killed before its lookups: all three downloaded."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a lighthouse\na harbour at dusk\na gull\n")
    config = SimConfig(
        admin=True, seed=31, time_scale=2000.0, faults=Faults(fail_rate=0.0)
    )
    db = tmp_path / "lost.db"
    with SimServer(config) as server:
        env = cli_env(server, db)
        stored = klingmon(*FAST_FLAGS, "submit", str(prompts), "-b", "l", env=env)
        assert stored.returncode == 0, stored.stderr
        # Each answer waits 2 s; the creates are stored, then their answers dropped.
        admin(server, "faults", {"fail_rate": 0.0, "latency": 2.0})
        admin(
            server,
            "script",
            {"route": "create", "status": 200, "drop": True, "times": 3},
        )
        proc = spawn(*FAST_FLAGS, "watch", "l", "--json", env=env)
        wait_for("three creates", lambda: len(server.sim.counters()["tasks"]) == 3)
        proc.send_signal(signal.SIGKILL)  # while its lookups wait for their answers
        proc.communicate(timeout=10)
        with Store.open(str(db)) as store:
            assert {t.status for t in store.tasks.tasks()} == {TaskStatus.SUBMITTING}
        wait_for(
            "Kling to finish them",
            lambda: (
                {t["status"] for t in server.sim.counters()["tasks"].values()}
                == {"succeed"}
            ),
        )
        admin(server, "faults", {"fail_rate": 0.0})
        final = klingmon(*FAST_FLAGS, "watch", "l", "--json", env=env)
        at_kling = results_at_kling(server)
        billed = billed_per_external_id(server)
        creates = server.sim.counters()["creates_per_external_id"]
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["done"] is True
    assert sum(at_kling.values()) == 3
    assert files_on_disk(tmp_path / "downloads") == at_kling
    assert set(billed.values()) == {1}
    assert set(creates.values()) == {1}
