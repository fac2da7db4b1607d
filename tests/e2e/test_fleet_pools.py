"""A fleet on PostgreSQL with mixed pools: three ``klingmon worker`` processes.

One batch of Kling 3.0 video, Kling 2.6 video and image sets of ``n = 4`` on pools
of 3, 3 and 8 slots (the simulator enforces them; the workers are told them in
``KLINGMON_POOLS``). Every task ends, each external id is created once, and no pool
ever holds more than its size between the three workers (the simulator's record).
The pool key's account part is the default account.
"""

from __future__ import annotations

import json
import time

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, stop_all
from test_fleet_postgres import _start, pg_url

from klingmon.domain import TERMINAL
from klingmon.sim import Faults, SimConfig
from klingmon.store import NewTask, Store
from klingmon.testing import SimServer

__all__ = ["pg_url"]  # the fleet suite's fixture, used here

SIZES = {"kling-3.0/video": 3, "kling-2.6/video": 3, "kling-3.0/image": 8}
ROUNDS = 20


def _batch() -> list[NewTask]:
    out: list[NewTask] = []
    for i in range(ROUNDS):
        out += [
            NewTask("/text-to-video/kling-3.0", {"prompt": f"a heron {i}"}),
            NewTask("/text-to-video/kling-2.6", {"prompt": f"a crane {i}"}),
            NewTask("/image-generation/kling-3.0", {"prompt": f"poster {i}", "n": 4}),
        ]
    return out


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_three_workers_never_overfill_a_pool(pg_url, tmp_path):
    config = SimConfig(
        admin=True,
        seed=41,
        time_scale=600.0,
        video_slots=3,
        image_slots=8,
        faults=Faults(fail_rate=0.03),
    )
    procs = []
    with SimServer(config) as server:
        env = cli_env(server, tmp_path / "unused.db")
        env.update(
            KLINGMON_DB=pg_url,
            KLING_API_KEY=server.sim.config.api_key or "",
            KLINGMON_POOLS=" ".join(f"{p}={n}" for p, n in SIZES.items()),
        )
        with Store.open(pg_url) as store:
            store.tasks.create_batch("pools", _batch(), int(time.time() * 1000))
            try:
                for n in range(3):
                    args = ["--slots", "20", "--no-download", *FAST_FLAGS, "worker"]
                    procs.append(_start(args, env, tmp_path / f"worker{n}.log"))
                deadline = time.monotonic() + 90
                while not all(t.status in TERMINAL for t in store.tasks.tasks()):
                    for n, proc in enumerate(procs):
                        log = tmp_path / f"worker{n}.log"
                        assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the batch did not end"
                    time.sleep(0.2)
                tasks = store.tasks.tasks()
                shown = klingmon("status", "--pools", "--json", env=env)
            finally:
                stop_all(procs)
        counters = server.sim.counters()
    creates = counters["creates_per_external_id"]
    assert sorted(creates) == sorted(t.external_task_id for t in tasks)
    assert set(creates.values()) == {1}
    assert counters["answers_1303"] == 0
    most = counters["max_in_flight_per_pool"]
    assert set(most) == set(SIZES)
    assert all(most[p] <= SIZES[p] for p in SIZES), most
    assert {t.status.value for t in tasks} <= {"succeed", "failed"}
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == []  # nothing holds a slot once all ended
