"""``watch`` as a user meets it: scope, loud failures, deadlines, the closing note."""

from __future__ import annotations

import json
import time

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon

from klingmon.api import Text2VideoRequest
from klingmon.engine import Monitor
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer, free_port


@pytest.fixture
def server():
    config = SimConfig(
        admin=True, seed=31, time_scale=2000.0, slots=10, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as running:
        yield running


def _prompts(tmp_path, name, n):
    path = tmp_path / f"{name}.txt"
    path.write_text("".join(f"{name} scene {i}\n" for i in range(n)))
    return str(path)


def _store_batch(tmp_path, name, n, *, timeout=None):
    """Setup only: a stored batch, as `klingmon submit FILE -b NAME` leaves it."""
    with Store.open(str(tmp_path / "k.db")) as store:
        requests = [Text2VideoRequest(prompt=f"{name} scene {i}") for i in range(n)]
        Monitor(store=store).submit(requests, batch=name, timeout=timeout)


def _external_ids(tmp_path, batch):
    """The batch's tasks as the store holds them: external id -> status."""
    with Store.open(str(tmp_path / "k.db")) as store:
        row = store.tasks.batch(batch)
        assert row is not None
        return {t.external_task_id: t.status.value for t in store.tasks.tasks(row.id)}


def test_watch_sends_only_the_named_batch(server, tmp_path):
    """Two stored batches, `watch a`: the simulator creates a's tasks and no other."""
    env = cli_env(server, tmp_path / "k.db")
    for name in ("a", "b"):
        _store_batch(tmp_path, name, 3)
    watched = klingmon(*FAST_FLAGS, "watch", "a", "--json", env=env)
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout)["counts"] == {"succeed": 3}
    created = server.sim.counters()["creates_per_external_id"]
    assert set(created) == set(_external_ids(tmp_path, "a"))
    assert set(_external_ids(tmp_path, "b").values()) == {"queued"}
    # --all sends the rest too
    everything = klingmon(*FAST_FLAGS, "watch", "a", "--all", "--json", env=env)
    assert everything.returncode == 0, everything.stderr
    assert set(_external_ids(tmp_path, "b").values()) == {"succeed"}
    assert set(server.sim.counters()["creates_per_external_id"].values()) == {1}


def test_unreachable_api_base_gives_up_with_exit_4_and_watch_resumes(server, tmp_path):
    """Nothing listening: said at once, exit 4 in bounded time, nothing lost."""
    env = cli_env(server, tmp_path / "k.db")
    closed = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    gone = klingmon(
        "--api-base",
        closed,
        "submit",
        _prompts(tmp_path, "gone", 2),
        "-b",
        "gone",
        "--no-preflight",  # the preflight would refuse it; this is the engine's own
        "--watch",
        "--give-up-after",
        "1",
        env=env,
        timeout=30,
    )
    took = time.monotonic() - started
    assert gone.returncode == 4, gone.stderr
    assert took < 20
    lines = gone.stderr.strip().splitlines()
    assert f"! cannot reach {closed} (connection refused) — retrying" in lines
    assert lines[-1].startswith(f"Error: cannot reach {closed} (connection refused)")
    assert "nothing is lost; resume with `klingmon watch gone`" in lines[-1]
    assert server.sim.counters()["creates_per_external_id"] == {}
    resumed = klingmon(*FAST_FLAGS, "watch", "gone", "--json", env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["counts"] == {"succeed": 2}
    created = server.sim.counters()["creates_per_external_id"]
    assert set(created) == set(_external_ids(tmp_path, "gone"))
    assert set(created.values()) == {1}


def test_timeout_ends_the_watch_with_exit_6_and_tasks_stay_tracked(tmp_path):
    """--timeout 1 on a slow batch: exit 6 in about a second, tasks still at Kling."""
    with SimServer(SimConfig(seed=32, time_scale=20.0)) as slow:
        env = cli_env(slow, tmp_path / "k.db")
        _store_batch(tmp_path, "slow", 2)
        started = time.monotonic()
        ended = klingmon(*FAST_FLAGS, "watch", "slow", "--timeout", "1", env=env)
        took = time.monotonic() - started
        assert ended.returncode == 6, ended.stderr
        assert took < 15
        assert (
            "Stopped watching after 1.0s: 2 tasks still running stay tracked; "
            "resume with `klingmon watch slow`." in ended.stderr
        )
        statuses = set(_external_ids(tmp_path, "slow").values())
        assert statuses <= {"submitted", "processing"}
        assert len(slow.sim.counters()["creates_per_external_id"]) == 2


def test_warnings_stay_out_of_the_view_without_verbose(server, tmp_path):
    """Deadline warnings are counted in the view, not printed over it."""
    env = cli_env(server, tmp_path / "k.db")
    _store_batch(tmp_path, "late", 2, timeout=0.01)
    quiet = klingmon(*FAST_FLAGS, "watch", "late", env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "task.watch_timeout" not in quiet.stderr
    assert "latest task.watch_timeout (run with -v to see them)" in quiet.stdout
    assert "late: 2 of 2 succeeded, 0 failed" in quiet.stderr
    assert "Files are under" in quiet.stderr


def test_files_not_downloaded_are_not_success(server, tmp_path):
    """Results from an origin not allowed are owed: exit 4 and the count, not 0."""
    env = cli_env(server, tmp_path / "k.db")
    env["KLINGMON_DOWNLOAD_ORIGINS"] = "https://cdn.invalid"
    path = _prompts(tmp_path, "owed", 2)
    watched = klingmon(*FAST_FLAGS, "submit", path, "-b", "owed", "-w", env=env)
    assert watched.returncode == 4, watched.stderr
    assert "2 result files are not downloaded yet" in watched.stderr
    assert "`klingmon download owed`" in watched.stderr
    as_json = klingmon(*FAST_FLAGS, "watch", "owed", "--json", env=env)
    assert as_json.returncode == 4
    assert json.loads(as_json.stdout)["files_owed"] == 2


def test_refused_credentials_show_at_once_and_exit_3(server, tmp_path):
    """A wrong secret: the trouble line, exit 3, the resume line, nothing created."""
    env = cli_env(server, tmp_path / "k.db")
    env["KLING_SECRET_KEY"] = "not-the-secret"
    path = _prompts(tmp_path, "keys", 2)
    # --no-preflight: the preflight would refuse it; this is how the engine says it.
    refused = klingmon(
        *FAST_FLAGS, "submit", path, "-b", "keys", "--no-preflight", "-w", env=env
    )
    assert refused.returncode == 3, refused.stderr
    lines = refused.stderr.strip().splitlines()
    assert f"! {server.url} refused the credentials (HTTP 401) — retrying" in lines
    assert lines[-1].endswith("nothing is lost; resume with `klingmon watch keys`")
    assert server.sim.counters()["creates_per_external_id"] == {}
    assert set(_external_ids(tmp_path, "keys").values()) == {"queued"}
