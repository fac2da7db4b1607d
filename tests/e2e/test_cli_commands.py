"""The real ``klingmon`` command in subprocesses, against the simulator on loopback."""

from __future__ import annotations

import csv
import io
import json
import signal
import time

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn

from klingmon.api import KlingClient, Text2VideoRequest
from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer


@pytest.fixture
def server():
    config = SimConfig(
        admin=True, seed=21, time_scale=2000.0, slots=10, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as running:
        yield running


def _json(result):
    assert result.returncode in {0, 5}, result.stderr
    return json.loads(result.stdout)


def test_submit_watch_then_read_every_view(server, tmp_path):
    """submit --watch ends the batch; status, report, show, export agree with it."""
    env = cli_env(server, tmp_path / "k.db")
    prompts = tmp_path / "p.txt"
    prompts.write_text("".join(f"scene {i}\n" for i in range(12)))
    done = klingmon(
        *FAST_FLAGS, "submit", str(prompts), "-b", "views", "--watch", "--json", env=env
    )
    summary = _json(done)
    assert done.returncode == 0
    assert summary.pop("elapsed_s") > 0
    assert summary == {
        "batch": "views",
        "priority": 0,
        "total": 12,
        "counts": {"succeed": 12},
        "done": True,
        "failed": 0,
        "outcome": "done",
        "files_owed": 0,
    }
    videos = sorted((tmp_path / "downloads").rglob("*.mp4"))
    assert len(videos) == 12
    assert all(v.with_name(v.name + ".json").is_file() for v in videos)
    [status] = _json(klingmon("status", "--json", env=env))
    assert status["counts"] == {"succeed": 12}
    assert status["done"] is True
    report = _json(klingmon("report", "views", "--json", env=env))
    assert report["total"] == 12
    assert report["requests"]["create"] == 12
    assert report["units"] > 0
    exported = klingmon("export", "views", "--format", "csv", env=env)
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert len(rows) == 12
    assert {r["status"] for r in rows} == {"succeed"}
    assert all(r["urls"].startswith(server.url) for r in rows)
    shown = _json(klingmon("show", rows[0]["task_id"], "--json", env=env))
    kinds = [(e["source"], e["new_status"]) for e in shown["events"]]
    assert ("local", "submitting") in kinds
    assert kinds[-1][1] == "succeed"
    human = klingmon("show", rows[0]["external_task_id"], env=env)
    assert "Timeline" in human.stdout
    everything = done.stdout + done.stderr + exported.stdout + json.dumps(report)
    assert server.sim.config.secret_key not in everything


def test_a_bad_row_stores_nothing_and_exits_2(server, tmp_path):
    """A file with one bad row: exit 2, one line naming file:line, no batch stored."""
    env = cli_env(server, tmp_path / "k.db")
    path = tmp_path / "tasks.csv"
    path.write_text("prompt,cfg_scale\nfine,0.5\nbad,1.5\n")
    result = klingmon("submit", str(path), env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"Error: {path}:3: cfg_scale: Input should be less than or equal to 1"
    ]
    assert _json(klingmon("status", "--json", env=env)) == []
    dry = klingmon("submit", str(path), "--dry-run", env=env)
    assert dry.returncode == 2


def test_dry_run_validates_without_storing(server, tmp_path):
    """--dry-run says how many tasks are valid, quotes them and stores none."""
    env = cli_env(server, tmp_path / "k.db")
    path = tmp_path / "p.txt"
    path.write_text("one\ntwo\n")
    answer = _json(klingmon("submit", str(path), "--dry-run", "--json", env=env))
    quote = answer.pop("quote")
    assert answer == {"valid": True, "tasks": 2, "file": str(path)}
    assert (quote["units"], quote["lines"][0]["price"]) == (2.0, "shipped")
    assert quote["covered"] is True
    assert _json(klingmon("status", "--json", env=env)) == []


def test_failed_tasks_exit_5_and_retry_links_new_tasks(tmp_path):
    """A batch whose tasks fail exits 5; retry stores a new batch pointing back."""
    config = SimConfig(
        admin=True, seed=22, time_scale=2000.0, faults=Faults(fail_rate=1.0)
    )
    with SimServer(config) as server:
        env = cli_env(server, tmp_path / "k.db")
        path = tmp_path / "p.txt"
        path.write_text("a\nb\nc\n")
        watched = klingmon(
            *FAST_FLAGS, "submit", str(path), "-b", "doomed", "-w", "--json", env=env
        )
        assert watched.returncode == 5
        assert json.loads(watched.stdout)["failed"] == 3
        retried = _json(
            klingmon("retry", "doomed", "--include-moderated", "--json", env=env)
        )
        assert retried == {
            "batch": "doomed-retry",
            "id": 2,
            "tasks": 3,
            "retry_of": "doomed",
            "skipped_moderated": 0,
        }
        exported = json.loads(
            klingmon("export", "doomed-retry", "--format", "json", env=env).stdout
        )
        old = json.loads(klingmon("export", "doomed", "-f", "json", env=env).stdout)
        assert sorted(t["retry_of"] for t in exported) == sorted(t["id"] for t in old)
        assert {t["status"] for t in exported} == {"queued"}
        again = klingmon("retry", "doomed", env=env)
        assert again.returncode == 2, again.stderr
        assert again.stderr.strip() == (
            "Error: batch doomed was already retried as doomed-retry: `klingmon "
            "watch doomed-retry` runs it, `klingmon retry doomed-retry` retries its "
            "failures, --batch NEW retries doomed once more"
        )
        named = _json(
            klingmon(
                "retry",
                "doomed",
                "--batch",
                "doomed-2",
                "--include-moderated",
                "--json",
                env=env,
            )
        )
        assert (named["batch"], named["tasks"]) == ("doomed-2", 3)


def test_track_and_import_adopt_tasks_created_elsewhere(server, tmp_path):
    """Tasks created by another program are adopted, watched and finished."""
    env = cli_env(server, tmp_path / "k.db")
    config = server.sim.config
    with KlingClient(
        base_url=server.url, access_key=config.access_key, secret_key=config.secret_key
    ) as client:
        made = [client.create(Text2VideoRequest(prompt=f"own {i}")) for i in range(4)]
    ids = [t.task_id for t in made]
    tracked = _json(klingmon("track", *ids[:2], "-b", "mine", "--json", env=env))
    assert tracked["tasks"] == 2
    imported = _json(klingmon("import", "-b", "rest", "--json", env=env))
    assert imported["tasks"] == 2
    for batch in ("mine", "rest"):
        summary = _json(klingmon(*FAST_FLAGS, "watch", batch, "--json", env=env))
        assert summary["done"] is True
    exported = json.loads(klingmon("export", "--json", env=env).stdout)
    assert sorted(t["task_id"] for t in exported) == sorted(ids)
    again = klingmon("import", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stderr.strip() == (
        "Nothing new: every recent text2video task is already tracked"
    )
    twice = klingmon("track", ids[0], env=env)
    assert twice.returncode == 0, twice.stderr
    assert twice.stderr.strip() == f"Already tracked: task {ids[0]} in batch mine"
    assert len(json.loads(klingmon("export", "--json", env=env).stdout)) == 4
    creates = server.sim.counters()["creates_per_external_id"]
    assert sorted(creates.values()) == [1, 1, 1, 1]


def test_unknown_batch_and_task_are_usage_errors(server, tmp_path):
    """Asking for what is not there, or a report of nothing, is one line and exit 2."""
    env = cli_env(server, tmp_path / "k.db")
    empty = klingmon("report", env=env)
    assert empty.returncode == 2, empty.stderr
    assert empty.stderr.strip() == (
        "Error: no batches yet; submit one with `klingmon submit FILE`"
    )
    for args in (
        ("report", "nope"),
        ("show", "nope"),
        ("watch", "nope"),
    ):
        result = klingmon(*args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith("Error: no "), result.stderr
        assert "'nope'" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_global_options_after_the_command(server, tmp_path):
    """--db, --no-download and poll flags work after the command as before it."""
    env = cli_env(server, tmp_path / "unused.db")
    path = tmp_path / "p.txt"
    path.write_text("one\ntwo\n")
    db = tmp_path / "after.db"
    done = klingmon(
        "submit", str(path), "-b", "late", "-w", "--json", "--no-download",
        "--db", str(db), *FAST_FLAGS, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert _json(done)["counts"] == {"succeed": 2}
    assert not (tmp_path / "downloads").exists()
    assert not (tmp_path / "unused.db").exists()
    [row] = _json(klingmon("status", "--json", "--db", str(db), env=env))
    assert row["batch"] == "late"


def _wait_for(condition, within=30.0):
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.parametrize("command", ["submit --watch", "watch"])
def test_sigint_exits_130_with_the_resume_line(tmp_path, command):
    """Ctrl-C on submit --watch or watch: a clean stop, exit 130, how to resume."""
    config = SimConfig(admin=True, seed=23, time_scale=1.0, faults=Faults(fail_rate=0))
    with SimServer(config) as server:
        env = cli_env(server, tmp_path / "k.db")
        path = tmp_path / "p.txt"
        path.write_text("slow one\nslow two\n")
        if command == "watch":
            assert klingmon("submit", str(path), "-b", "slow", env=env).returncode == 0
            proc = spawn(*FAST_FLAGS, "watch", "slow", env=env)
        else:
            proc = spawn(*FAST_FLAGS, "submit", str(path), "-b", "slow", "-w", env=env)
        try:
            _wait_for(
                lambda: (
                    sum(server.sim.counters()["creates_per_external_id"].values()) == 2
                )
            )
            proc.send_signal(signal.SIGINT)
            _out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1].startswith("Interrupted; nothing is lost")
        assert err.strip().endswith("watch slow`")
        assert "resume with `" in err
        [row] = _json(klingmon("status", "--json", env=env))
        assert row["total"] == 2
        assert "queued" not in row["counts"]
        creates = server.sim.counters()["creates_per_external_id"]
        assert sorted(creates.values()) == [1, 1]
