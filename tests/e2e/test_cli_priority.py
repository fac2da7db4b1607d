"""``submit --priority`` and ``klingmon priority`` in the real command."""

from __future__ import annotations

import csv
import io
import json

import pytest
from cli_support import cli_env, klingmon

from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer


@pytest.fixture
def server():
    config = SimConfig(
        admin=True, seed=5, time_scale=2000.0, faults=Faults(fail_rate=0)
    )
    with SimServer(config) as running:
        yield running


def _ok(result):
    assert result.returncode == 0, result.stderr
    return result


def test_priority_is_set_changed_recorded_and_shown(server, tmp_path):
    env = cli_env(server, tmp_path / "k.db")
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\n")
    stored = _ok(klingmon("submit", str(prompts), "-b", "big", env=env))
    assert "at priority" not in stored.stderr
    urgent = _ok(
        klingmon("submit", str(prompts), "-b", "rush", "--priority", "3", env=env)
    )
    assert "Stored batch rush with 2 tasks at priority 3." in urgent.stderr
    changed = _ok(klingmon("priority", "big", "-2", env=env))
    assert changed.stderr.strip() == (
        "Batch big: priority 0 → -2; 2 queued tasks go by it from the next claim."
    )
    as_json = json.loads(
        _ok(klingmon("priority", "rush", "7", "--json", env=env)).stdout
    )
    assert as_json == {"batch": "rush", "id": 2, "old": 3, "new": 7}

    status = json.loads(_ok(klingmon("status", "--json", env=env)).stdout)
    assert {b["batch"]: b["priority"] for b in status} == {"big": -2, "rush": 7}
    table = _ok(klingmon("status", env=env)).stdout
    assert "priority" in table
    report = json.loads(_ok(klingmon("report", "rush", "--json", env=env)).stdout)
    assert report["priority"] == 7
    rows = list(csv.DictReader(io.StringIO(_ok(klingmon("export", env=env)).stdout)))
    assert {(r["batch"], r["priority"]) for r in rows} == {("big", "-2"), ("rush", "7")}
    with Store.open(str(tmp_path / "k.db")) as store:
        first = store.tasks.task_ids_of_batch(2)[0]
        changes = [e.payload for e in store.outbox.events(task_id=first)]
    assert {"old": 3, "new": 7, "by": "cli"} in changes
    shown = _ok(klingmon("show", str(first), env=env)).stdout
    assert "priority 3 → 7" in shown


def test_an_unknown_batch_is_a_usage_error_and_the_help_says_how_aging_works(
    server, tmp_path
):
    env = cli_env(server, tmp_path / "k.db")
    missing = klingmon("priority", "nope", "1", env=env)
    assert missing.returncode == 2, missing.stderr
    assert "no batch 'nope'" in missing.stderr
    bad = klingmon("priority", "nope", "high", env=env)
    assert bad.returncode == 2
    assert "Invalid value for 'N'" in bad.stderr
    helped = _ok(klingmon("priority", "--help", env=env)).stdout
    flat = " ".join(helped.split())
    assert "A priority that gets no slot ages" in flat
    assert "none starves" in flat
