"""A store that cannot record: one line, exit 7, and no paid create sent into it."""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon

from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from pathlib import Path

PAGE = 4096


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error:"), stderr
    assert "Traceback" not in stderr
    return lines[0]


def _creates(server: SimServer) -> int:
    return sum(server.sim.counters()["creates_per_external_id"].values())


@pytest.mark.timeout(90)
def test_a_damaged_store_is_refused_before_anything_is_sent(tmp_path: Path):
    """Pages overwritten in a real store: watch and status exit 7 in one line."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text(
        "".join(f"clip {i}: {'a slow pan over hills ' * 12}\n" for i in range(200))
    )
    db = tmp_path / "k.db"
    with SimServer(SimConfig(admin=True, seed=51, time_scale=1000.0)) as server:
        env = cli_env(server, db)
        stored = klingmon(*FAST_FLAGS, "submit", str(prompts), "-b", "d", env=env)
        assert stored.returncode == 0, stored.stderr
        pages = db.stat().st_size // PAGE
        assert pages > 40
        with db.open("r+b") as f:  # what a failing disk or a bad copy leaves
            for page in range(pages // 2, pages // 2 + 4):
                f.seek(page * PAGE)
                f.write(os.urandom(PAGE))
        watched = klingmon(*FAST_FLAGS, "watch", "d", env=env)
        status = klingmon("status", env=env)
        sent = _creates(server)
    assert watched.returncode == 7, watched.stderr
    assert "is damaged" in _one_error_line(watched.stderr)
    assert status.returncode == 7, status.stderr
    assert "is damaged" in _one_error_line(status.stderr)
    assert sent == 0


@pytest.mark.timeout(90)
def test_the_engine_sends_nothing_more_once_a_store_write_failed(tmp_path: Path):
    """The answer of the first create cannot be stored: no further create goes out."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"shot {i}\n" for i in range(20)))
    db = tmp_path / "k.db"
    config = SimConfig(
        admin=True, seed=52, time_scale=100.0, slots=20, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as server:
        env = cli_env(server, db)
        stored = klingmon("submit", str(prompts), "-b", "w", env=env)
        assert stored.returncode == 0, stored.stderr
        # A real SQLite write failure on the one write that records a create's
        # answer; a full disk or a damaged page fail at moments no test can pick.
        conn = sqlite3.connect(db)
        with conn:
            conn.execute(
                "CREATE TRIGGER refuse AFTER UPDATE OF status ON tasks "
                "WHEN NEW.status = 'submitted' "
                "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
        conn.close()
        # Two requests a second: twenty creates would take ten seconds to send.
        flags = (*FAST_FLAGS[:-2], "--rate", "2", "--slots", "20")
        watched = klingmon(*flags, "watch", "w", env=env)
        sent = _creates(server)
    assert watched.returncode == 7, watched.stderr
    assert "disk is full" in _one_error_line(watched.stderr)
    assert 1 <= sent <= 2, sent
