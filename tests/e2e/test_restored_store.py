"""A store restored from an older copy: its tasks are adopted, never paid again."""

from __future__ import annotations

import json
import sqlite3
from typing import TYPE_CHECKING

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn
from money_support import (
    billed_per_external_id,
    files_on_disk,
    results_at_kling,
    wait_for,
)

from klingmon.domain import TaskStatus
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from pathlib import Path

TASKS = 6


def _backup(db: Path, to: Path) -> None:
    """A consistent copy of a live store (sqlite3's online backup)."""
    source, copy = sqlite3.connect(db), sqlite3.connect(to)
    try:
        source.backup(copy)
    finally:
        source.close()
        copy.close()


def _restore(copy: Path, db: Path) -> None:
    for stale in (db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        stale.unlink(missing_ok=True)
    db.write_bytes(copy.read_bytes())


def _sent(db: Path) -> int:
    with Store.open(str(db)) as store:
        return sum(t.task_id is not None for t in store.tasks.tasks())


@pytest.mark.timeout(120)
def test_restored_store_adopts_what_kling_has_and_pays_nothing_twice(tmp_path):
    """Backup mid-run, finish, restore, watch again: each task billed and saved once."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"take {i}: a train at night\n" for i in range(TASKS)))
    config = SimConfig(
        admin=True, seed=41, time_scale=300.0, slots=2, faults=Faults(fail_rate=0.0)
    )
    db, copy = tmp_path / "k.db", tmp_path / "backup.db"
    flags = ("--slots", "2", *FAST_FLAGS)
    with SimServer(config) as server:
        env = cli_env(server, db)
        stored = klingmon(*flags, "submit", str(prompts), "-b", "r", env=env)
        assert stored.returncode == 0, stored.stderr
        proc = spawn(*flags, "watch", "r", "--json", env=env)
        wait_for("two tasks sent", lambda: _sent(db) >= 2)
        _backup(db, copy)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out)["done"] is True
        _restore(copy, db)
        with Store.open(str(db)) as store:
            behind = {t.status for t in store.tasks.tasks()}
        assert TaskStatus.QUEUED in behind  # the copy is older than Kling's truth
        again = klingmon(*flags, "watch", "r", "--json", env=env)
        at_kling = results_at_kling(server)
        billed = billed_per_external_id(server)
        counters = server.sim.counters()
    assert again.returncode == 0, again.stderr
    with Store.open(str(db)) as store:
        tasks = store.tasks.tasks()
    assert {t.status for t in tasks} == {TaskStatus.SUCCEED}
    assert sum(at_kling.values()) == TASKS
    assert files_on_disk(tmp_path / "downloads") == at_kling
    assert sorted(billed) == sorted(t.external_task_id for t in tasks)
    assert set(billed.values()) == {1}
    # Sent again from the older copy, each refused as a duplicate: nothing billed.
    creates = counters["creates_per_external_id"]
    duplicates = counters["duplicate_creates_per_external_id"]
    assert duplicates, "the restored copy re-sent nothing: the case was not made"
    assert {e: n - duplicates.get(e, 0) for e, n in creates.items()} == dict(billed)
