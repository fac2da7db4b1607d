"""A fleet on PostgreSQL: three workers and two receivers share one account.

One worker is SIGKILLed mid-run and another stopped with SIGTERM; the batch still
ends with every task terminal and downloaded, one create per external id, never
more tasks in flight than the account's slots, and no file fetched twice unless
a stopped worker held it.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from cli_support import FAST_FLAGS, cli_env, klingmon, stop_all

from klingmon.domain import TERMINAL, TaskStatus
from klingmon.downloads import DownloadSettings
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer, free_port

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

PG_URL = os.environ.get(
    "KLINGMON_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
# Read at import: the suite's autouse fixture clears KLINGMON_* before each test runs.
REQUIRE_SERVICES = os.environ.get("KLINGMON_REQUIRE_SERVICES") == "1"
TASKS = 240
SLOTS = 20


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards."""
    admin = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL at KLINGMON_TEST_PG_URL does not answer: {exc.orig}"
        if REQUIRE_SERVICES:
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"km_fleet_{os.getpid()}_{secrets.token_hex(4)}"
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = sa.make_url(PG_URL).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "klingmon", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"receiver on {port} did not listen")


def _wait_until(store: Store, predicate_name: str, deadline_s: float, check) -> None:
    deadline = time.monotonic() + deadline_s
    while not check(store):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate_name}"
        time.sleep(0.2)


def _progress(store: Store) -> tuple[int, int]:
    tasks = store.tasks.tasks()
    finished = sum(t.status in TERMINAL for t in tasks)
    return finished, len(tasks)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.timeout(300)
def test_three_workers_two_receivers_survive_a_kill_and_a_stop(pg_url, tmp_path):
    """SIGKILL one worker, SIGTERM another: everything still ends, nothing twice."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "".join(f"shot {i}: a lighthouse at dusk\n" for i in range(TASKS))
    )
    hooks_log = tmp_path / "hooks.log"
    hook = (
        "line=\"$KLINGMON_IDEMPOTENCY_KEY $(cat | tr -d '\\n')\"; "
        f"printf '%s\\n' \"$line\" >> {hooks_log}"
    )
    config = SimConfig(
        admin=True,
        seed=31,
        time_scale=600.0,
        slots=SLOTS,
        faults=Faults(fail_rate=0.03),
    )
    downloads = tmp_path / "downloads"
    procs: list[subprocess.Popen[bytes]] = []
    with SimServer(config) as server:
        base_env = cli_env(server, tmp_path / "unused.db")
        base_env.update(KLINGMON_DB=pg_url, KLINGMON_DOWNLOAD_DIR=str(downloads))
        receivers = []
        for n in range(2):
            port = free_port()
            log = tmp_path / f"receiver{n}.log"
            url = f"http://127.0.0.1:{port}"
            proc = _start(
                ["serve", "--no-engine", "--port", str(port), "--public-url", url],
                base_env,
                log,
            )
            procs.append(proc)
            _wait_listening(port, proc, log)
            receivers.append(url)
        try:
            stored = klingmon(
                "submit", str(prompts), "-b", "fleet", env=base_env, timeout=60
            )
            assert stored.returncode == 0, stored.stderr
            workers = []
            for n in range(3):
                env = {**base_env, "KLINGMON_PUBLIC_URL": receivers[n % 2]}
                args = ["--slots", str(SLOTS), *FAST_FLAGS]
                args += ["worker", "--hook-command", hook]
                workers.append(_start(args, env, tmp_path / f"worker{n}.log"))
            procs += workers
            with Store.open(pg_url) as store:
                _wait_until(
                    store,
                    "a quarter done",
                    120,
                    lambda s: _progress(s)[0] >= TASKS // 4,
                )
                workers[0].send_signal(signal.SIGKILL)
                workers[0].wait(timeout=10)
                _wait_until(
                    store, "half done", 120, lambda s: _progress(s)[0] >= TASKS // 2
                )
                workers[1].send_signal(signal.SIGTERM)
                assert workers[1].wait(timeout=30) == 0, (
                    tmp_path / "worker1.log"
                ).read_text()
                _wait_until(store, "all done", 200, lambda s: _progress(s)[0] == TASKS)
                _wait_until(
                    store,
                    "all downloaded",
                    120,
                    lambda s: (
                        s.downloads.download_counts().get("done", 0)
                        == sum(t.status == TaskStatus.SUCCEED for t in s.tasks.tasks())
                    ),
                )
                _wait_until(
                    store, "hooks drained", 60, lambda s: s.outbox.outbox_backlog() == 0
                )
                tasks = store.tasks.tasks()
                rows = store.downloads.download_rows()
                shown = klingmon("status", "--workers", "--json", env=base_env)
                upgraded = klingmon("db", "upgrade", "--json", env=base_env)
                fleet = store.fleet.workers(int(time.time() * 1000))
                report = store.reports.report(store.tasks.batch("fleet").id)  # type: ignore[union-attr]
            counters = server.sim.counters()
            shas = {r.id: server.sim.media_sha256(r.url) for r in rows}
        finally:
            stop_all(procs)
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    assert {t.task_id: t.status.value for t in tasks} == truth
    creates = counters["creates_per_external_id"]
    assert sorted(creates) == sorted(t.external_task_id for t in tasks)
    assert set(creates.values()) == {1}
    assert counters["max_in_flight"] <= SLOTS
    succeeded = [t for t in tasks if t.status == TaskStatus.SUCCEED]
    assert len(rows) == len(succeeded)
    assert all(r.status == "done" and r.sha256 == shas[r.id] for r in rows)
    requests = counters["requests"]
    # Each file fetched once, but for those a stopped worker was holding: its
    # successor fetches them again. A snapshot of the dead worker's leases races
    # with the survivors reclaiming them, so the bound is what two stopped workers
    # can hold at most: their parallel downloads.
    refetchable = 2 * DownloadSettings().parallel
    assert len(rows) <= requests.get("media 200", 0) <= len(rows) + refetchable
    assert report.statuses_via.get("callback", 0) > 0  # the receivers did their part
    assert len(fleet) == 3
    assert sum(w.stopped_ms is not None for w in fleet) == 1  # the SIGTERMed one
    listed = json.loads(shown.stdout)
    assert sorted(w["owner"] for w in listed) == sorted(w.owner for w in fleet)
    assert sum(w["alive"] for w in listed) >= 1
    revision = json.loads(upgraded.stdout)
    assert revision["revision"] == revision["head"]
    assert revision["db"].startswith("postgresql+psycopg://")
    keys_by_event: dict[int, set[str]] = defaultdict(set)
    for line in hooks_log.read_text().splitlines():
        key, _, body = line.partition(" ")
        assert key.startswith("klingmon-event-")
        try:
            event = json.loads(body)["event"]
        except ValueError:  # fed by the SIGKILLed worker: never acknowledged, redone
            continue
        keys_by_event[event["id"]].add(key)
    assert keys_by_event
    assert all(keys == {f"klingmon-event-{eid}"} for eid, keys in keys_by_event.items())
