"""A fleet on PostgreSQL over two accounts: three ``klingmon worker`` processes.

Two simulated accounts behind one base URL (told apart by their keys), each with
pools of 2 (Kling 3.0 video), 2 (Kling 2.6 video) and 8 slots (images of ``n = 4``);
the workers know them from ``[accounts.NAME]`` tables and ``KLING_<NAME>_API_KEY``,
with no key for the unnamed account. One batch is named on both accounts, one on
``a`` alone (``submit --account a``). Every task ends, each external id is created
once across both accounts, and no pool of either account ever holds more than its
size between the three workers (each simulator's own record).
"""

from __future__ import annotations

import json
import os
import time

import pytest
from cli_support import FAST_FLAGS, klingmon, stop_all
from test_fleet_postgres import _start, pg_url

from klingmon.domain import TERMINAL
from klingmon.sim import Faults, SimAccounts, SimConfig
from klingmon.store import NewTask, Store
from klingmon.testing import AppServer

__all__ = ["pg_url"]  # the fleet suite's fixture, used here

SIZES = {"kling-3.0/video": 2, "kling-2.6/video": 2, "kling-3.0/image": 8}
ROUNDS = 6


def _account(name: str, seed: int) -> SimConfig:
    return SimConfig(
        admin=True,
        seed=seed,
        time_scale=600.0,
        video_slots=2,
        image_slots=8,
        faults=Faults(fail_rate=0.03),
        access_key=f"{name}-access",
        secret_key=f"{name}-secret-key-0123456789",
        api_key=f"{name}-api-key",
    )


def _batch() -> list[NewTask]:
    out: list[NewTask] = []
    for i in range(ROUNDS):
        out += [
            NewTask("/text-to-video/kling-3.0", {"prompt": f"a heron {i}"}),
            NewTask("/text-to-video/kling-2.6", {"prompt": f"a crane {i}"}),
            NewTask("/image-generation/kling-3.0", {"prompt": f"poster {i}", "n": 4}),
        ]
    return out


def _config(path, url: str) -> None:
    pools = "".join(f'"{p}" = {n}\n' for p, n in SIZES.items())
    path.write_text(
        "".join(
            f'[accounts.{name}]\napi_base = "{url}"\n[accounts.{name}.pools]\n{pools}'
            for name in ("a", "b")
        )
    )


@pytest.mark.postgres
@pytest.mark.timeout(120)
def test_three_workers_on_two_accounts_never_overfill_a_pool(pg_url, tmp_path):
    accounts = SimAccounts({"a": _account("a", 41), "b": _account("b", 42)})
    server = AppServer(accounts.app)
    server.start()
    procs = []
    try:
        _config(tmp_path / "klingmon.toml", server.url)
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KLING_", "KLINGMON_"))
        }
        env.update(
            KLINGMON_CONFIG=str(tmp_path / "klingmon.toml"),
            KLINGMON_DB=pg_url,
            KLING_A_API_KEY="a-api-key",
            KLING_B_API_KEY="b-api-key",
        )
        rows = tmp_path / "rows.csv"
        rows.write_text("prompt\n" + "".join(f"only a {i}\n" for i in range(4)))
        stored = klingmon(
            "submit",
            str(rows),
            "--endpoint",
            "/text-to-video/kling-3.0",
            "--account",
            "a",
            "--no-preflight",
            "--batch",
            "only-a",
            env=env,
        )
        assert stored.returncode == 0, stored.stderr
        with Store.open(pg_url) as store:
            store.tasks.create_batch(
                "both", _batch(), int(time.time() * 1000), accounts=["a", "b"]
            )
            try:
                for n in range(3):
                    args = ["--no-download", *FAST_FLAGS, "worker"]
                    procs.append(_start(args, env, tmp_path / f"worker{n}.log"))
                deadline = time.monotonic() + 60
                while not all(t.status in TERMINAL for t in store.tasks.tasks()):
                    for n, proc in enumerate(procs):
                        log = tmp_path / f"worker{n}.log"
                        assert proc.poll() is None, log.read_text()
                    assert time.monotonic() < deadline, "the batches did not end"
                    time.sleep(0.2)
                tasks = store.tasks.tasks()
                shown = klingmon("status", "--pools", "--json", env=env)
                exported = klingmon("export", "only-a", env=env)
            finally:
                stop_all(procs)
        counters = accounts.counters()
    finally:
        server.stop()
    creates = {name: c["creates_per_external_id"] for name, c in counters.items()}
    assert set(creates["a"]).isdisjoint(creates["b"])  # never on two accounts
    everywhere = {**creates["a"], **creates["b"]}
    assert sorted(everywhere) == sorted(t.external_task_id for t in tasks)
    assert set(everywhere.values()) == {1}
    for t in tasks:
        assert t.external_task_id in creates[t.account or "?"]
    assert {t.account for t in tasks if t.batch_id != tasks[0].batch_id} == {"a", "b"}
    assert {t.account for t in tasks if t.batch_id == tasks[0].batch_id} == {"a"}
    for name, c in counters.items():
        assert c["answers_1303"] == 0, name
        most = c["max_in_flight_per_pool"]
        assert all(most.get(p, 0) <= SIZES[p] for p in SIZES), (name, most)
        assert most.get("kling-3.0/video") == SIZES["kling-3.0/video"], name
    assert {t.status.value for t in tasks} <= {"succeed", "failed"}
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == []  # nothing holds a slot once all ended
    assert exported.returncode == 0, exported.stderr
    header, *lines = exported.stdout.splitlines()
    column = header.split(",").index("account")
    assert {line.split(",")[column] for line in lines} == {"a"}
