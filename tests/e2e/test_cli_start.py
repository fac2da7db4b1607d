"""Starting a batch: a failed start stores nothing, stored work is never forgotten.

The real ``klingmon`` in subprocesses against the simulator on loopback; the
simulator's own counts say what Kling was asked to create (and so paid for).
"""

from __future__ import annotations

import json
import socket
import time

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon

from klingmon.api import KlingClient, Text2VideoRequest, snapshot
from klingmon.engine import Monitor
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer


@pytest.fixture
def server():
    config = SimConfig(
        admin=True, seed=31, time_scale=2000.0, slots=10, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as running:
        yield running


def _no_keys(env: dict[str, str]) -> dict[str, str]:
    return {
        k: v
        for k, v in env.items()
        if k not in {"KLING_ACCESS_KEY", "KLING_SECRET_KEY"}
    }


def _created(server: SimServer) -> dict[str, int]:
    """Creates the simulator took, per external_task_id (what was paid for)."""
    return server.sim.counters()["creates_per_external_id"]


def _stored(env: dict[str, str]) -> dict[str, dict[str, int]]:
    """Each stored batch's tasks by status, read from the store itself."""
    with Store.open(env["KLINGMON_DB"]) as store:
        return {
            b.name: {s.value: n for s, n in store.tasks.count_by_status(b.id).items()}
            for b in store.tasks.batches()
        }


def _prompts(tmp_path, n: int = 8):
    path = tmp_path / "prompts.csv"
    path.write_text("prompt\n" + "".join(f"scene {i}\n" for i in range(n)))
    return path


def test_a_failed_start_stores_nothing_and_each_task_is_created_once(server, tmp_path):
    """No credentials: exit 2, nothing stored; the next submits create each row once."""
    env = cli_env(server, tmp_path / "k.db")
    path = _prompts(tmp_path)
    nokey = _no_keys(env) | {"KLING_API_BASE": ""}
    failed = klingmon(
        "--api-base",
        server.url,
        "submit",
        str(path),
        "--batch",
        "nokey",
        "--watch",
        env=nokey,
    )
    assert failed.returncode == 2, failed.stderr
    assert "no Kling credentials" in failed.stderr
    assert "nothing was stored" in failed.stderr
    assert _stored(env) == {}
    assert _created(server) == {}

    launched = klingmon(
        *FAST_FLAGS,
        "submit",
        str(path),
        "--batch",
        "launch",
        "--watch",
        "--json",
        env=env,
    )
    assert launched.returncode == 0, launched.stderr
    assert json.loads(launched.stdout)["counts"] == {"succeed": 8}
    assert "nokey" not in launched.stderr
    created = _created(server)
    assert len(created) == 8
    assert set(created.values()) == {1}

    again = klingmon(*FAST_FLAGS, "submit", str(path), "-b", "launch", "-w", env=env)
    assert again.returncode == 2
    [line] = again.stderr.strip().splitlines()
    assert line.startswith("Error: a batch named 'launch' already exists")
    assert "nothing was stored" in line
    assert "--batch" in line
    assert _created(server) == created
    assert _stored(env) == {"launch": {"succeed": 8}}


def test_refused_credentials_exit_3_and_nothing_is_stored(server, tmp_path):
    """A wrong secret: exit 3 with Kling's message; no row stored, nothing created."""
    env = cli_env(server, tmp_path / "k.db") | {"KLING_SECRET_KEY": "not-the-secret"}
    path = _prompts(tmp_path, 3)
    for extra in ((), ("--watch",)):
        result = klingmon("submit", str(path), "-b", "wrong", *extra, env=env)
        assert result.returncode == 3, result.stderr
        [line] = result.stderr.strip().splitlines()
        assert "refused the credentials" in line
        assert "code 10" in line  # Kling's 1000-1004
        assert "nothing was stored" in line
        assert "not-the-secret" not in result.stderr
    assert _stored(env) == {}
    assert _created(server) == {}


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_api_base_exits_4_naming_it(server, tmp_path):
    """Nothing listening: exit 4 at once, naming the URL with its port; none stored."""
    port = _closed_port()
    env = cli_env(server, tmp_path / "k.db") | {
        "KLING_API_BASE": f"http://127.0.0.1:{port}"
    }
    started = time.monotonic()
    result = klingmon("submit", str(_prompts(tmp_path, 2)), "-w", env=env, timeout=30)
    assert result.returncode == 4, result.stderr
    assert time.monotonic() - started < 20
    [line] = result.stderr.strip().splitlines()
    assert f"cannot reach Kling at http://127.0.0.1:{port}" in line
    assert "nothing was stored" in line
    assert _stored(env) == {}


def test_a_batch_stored_offline_is_announced_until_sent_or_dropped(server, tmp_path):
    """--no-preflight stores without Kling; status says how to send or drop it."""
    env = _no_keys(cli_env(server, tmp_path / "k.db"))
    hint = (
        "Batch later: 3 tasks stored but not sent yet; send with "
        "`klingmon watch later`, or drop with `klingmon cancel later`."
    )
    stored = klingmon(
        "submit", str(_prompts(tmp_path, 3)), "-b", "later", "--no-preflight", env=env
    )
    assert stored.returncode == 0, stored.stderr
    assert hint in stored.stderr
    assert hint in klingmon("status", env=env).stderr
    unknown = klingmon("cancel", "later", "nope", env=env)
    assert unknown.returncode == 2
    assert "no batch or task 'nope'" in unknown.stderr
    assert _stored(env) == {"later": {"queued": 3}}  # one bad name: none cancelled
    dropped = klingmon("cancel", "later", env=env)
    assert dropped.returncode == 0, dropped.stderr
    assert "Cancelled 3 tasks of later: never sent, nothing paid." in dropped.stderr
    assert _stored(env) == {"later": {"cancelled": 3}}
    assert "stored but not sent" not in klingmon("status", env=env).stderr
    assert _created(server) == {}


def test_cancel_keeps_tasks_kling_holds_and_never_sends_the_cancelled(server, tmp_path):
    """After a crash mid-batch: queued tasks cancel, the one at Kling runs on."""
    db = tmp_path / "k.db"
    env = cli_env(server, db)
    config = server.sim.config
    with (
        Store.open(str(db)) as store,
        KlingClient(
            base_url=server.url,
            access_key=config.access_key,
            secret_key=config.secret_key,
        ) as client,
    ):
        requests = [Text2VideoRequest(prompt=f"scene {i}") for i in range(4)]
        Monitor(store=store).submit(requests, batch="mixed")
        # What a killed engine leaves: one create answered, one maybe under way.
        first, second = store.tasks.tasks()[:2]
        store.tasks.mark_submitting(first.id, 0)
        task = client.create(requests[0], external_task_id=first.external_task_id)
        store.tasks.mark_submitted(first.id, snapshot(task), 0, 0)
        store.tasks.mark_submitting(second.id, 0)
    result = klingmon("cancel", "mixed", "--json", env=env)
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)
    assert len(done["cancelled"]) == 2
    assert [t["task_id"] for t in done["at_kling"]] == [task.task_id]
    assert [t["external_task_id"] for t in done["sending"]] == [second.external_task_id]
    human = klingmon("cancel", task.task_id, env=env)
    assert "already at Kling, which has no cancel" in human.stderr
    watched = klingmon(*FAST_FLAGS, "watch", "mixed", "--json", env=env)
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout)["counts"] == {"succeed": 2, "cancelled": 2}
    created = _created(server)
    assert set(created) == {first.external_task_id, second.external_task_id}
    assert set(created.values()) == {1}
    with Store.open(str(db)) as store:
        cancelled = store.tasks.task(done["cancelled"][0]["id"])
        assert cancelled is not None
        events = store.outbox.events(task_id=cancelled.id)
    assert [(e.old_status, e.new_status) for e in events] == [("queued", "cancelled")]


def test_retry_skips_content_moderation_failures_unless_asked(tmp_path):
    """Moderation failures (1301, risk control) are skipped and counted; opt back in."""
    config = SimConfig(
        admin=True, seed=8, time_scale=2000.0, slots=10, faults=Faults(fail_rate=1.0)
    )
    with SimServer(config) as server:
        env = cli_env(server, tmp_path / "k.db")
        server.sim.script("create", status=400, code=1301)  # the first create
        path = _prompts(tmp_path, 9)
        ran = klingmon(*FAST_FLAGS, "submit", str(path), "-b", "doomed", "-w", env=env)
        assert ran.returncode == 5, ran.stderr
        with Store.open(env["KLINGMON_DB"]) as store:
            tasks = store.tasks.tasks()
        risky = [t for t in tasks if "risk control" in (t.status_msg or "")]
        rejected = [t for t in tasks if t.status == "rejected"]
        assert len(rejected) == 1
        assert risky  # the seed draws some risk-control failures
        moderated = len(risky) + len(rejected)
        retried = klingmon("retry", "doomed", env=env)
        assert retried.returncode == 0, retried.stderr
        assert f"retrying {9 - moderated} tasks" in retried.stderr
        assert f"Skipped {moderated} tasks that failed content moderation" in (
            retried.stderr
        )
        assert "--include-moderated" in retried.stderr
        assert "klingmon watch doomed-retry" in retried.stderr
        twice = klingmon("retry", "doomed", env=env)
        assert twice.returncode == 2
        assert "was already retried as doomed-retry" in twice.stderr
        assert "--batch NEW" in twice.stderr
        every = klingmon(
            "retry", "doomed", "-b", "all", "--include-moderated", "--json", env=env
        )
        assert json.loads(every.stdout)["tasks"] == 9
        assert json.loads(every.stdout)["skipped_moderated"] == 0


def test_retry_of_only_moderation_failures_is_a_usage_error(tmp_path):
    """Every failure was moderation: exit 2, nothing stored, the opt-in named."""
    db = tmp_path / "k.db"
    with Store.open(str(db)) as store:
        Monitor(store=store).submit([Text2VideoRequest(prompt="x")], batch="one")
        [row] = store.tasks.tasks()
        store.tasks.mark_submitting(row.id, 0)
        store.tasks.reject(row.id, 1, "Trigger the content security policy", 1301)
    env = {"KLINGMON_DB": str(db), "PATH": "/usr/bin:/bin"}
    result = klingmon("retry", "one", env=env)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "nothing to retry in batch one" in line
    assert "--include-moderated" in line
    assert _stored(env) == {"one": {"rejected": 1}}
