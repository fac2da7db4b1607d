"""SIGKILL ``klingmon download`` mid-file: the restart resumes and ends intact."""

from __future__ import annotations

import contextlib
import hashlib
import json
import signal
import time
from typing import TYPE_CHECKING

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn

from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from pathlib import Path

SIZE = 3 * 1024 * 1024


def _wait_for_part(out: Path, deadline_s: float) -> Path:
    """The first ``.part`` file with bytes in it, or a failure at the deadline."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for part in out.rglob("*.part"):
            with contextlib.suppress(FileNotFoundError):  # renamed meanwhile
                if part.stat().st_size > 0:
                    return part
        time.sleep(0.02)
    pytest.fail("no part file appeared")


@pytest.mark.timeout(90)
def test_sigkill_mid_file_resumes_and_matches(tmp_path: Path) -> None:
    """A download killed mid-file resumes with Range; hashes match; one row per file."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a slow river\n../../etc/passwd\n")
    config = SimConfig(
        admin=True,
        seed=21,
        time_scale=1000.0,
        faults=Faults(fail_rate=0.0),
        media_size=SIZE,
        media_chunk_delay=0.03,  # 48 chunks of 64 KiB: about 1.5 s a file
    )
    db = tmp_path / "k.db"
    out = tmp_path / "out"
    with SimServer(config) as server:
        env = cli_env(server, db)
        stored = klingmon(*FAST_FLAGS, "submit", str(prompts), "-b", "kill", env=env)
        assert stored.returncode == 0, stored.stderr
        watched = klingmon(
            *FAST_FLAGS, "--no-download", "watch", "kill", "--json", env=env
        )
        assert watched.returncode == 0, watched.stderr
        args = ("download", "kill", "--out", str(out))  # origin: from cli_env
        proc = spawn(*args, "--parallel", "1", "--json", env=env)
        part = _wait_for_part(out, 20.0)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL
        kept = part.stat().st_size
        assert 0 < kept < SIZE
        again = klingmon(*args, "--json", env=env)
        assert again.returncode == 0, again.stderr
        verified = klingmon("verify", "kill", "--json", env=env)
        counters = server.sim.counters()["requests"]
        with Store.open(str(db)) as store:
            rows = store.downloads.download_rows()
            expected = {r.id: server.sim.media_sha256(r.url) for r in rows}
    report = json.loads(again.stdout)
    assert report["counts"]["done"] == 2
    assert len(rows) == 2  # one row per file, never a duplicate
    for row in rows:
        assert row.status == "done"
        assert row.sha256 == expected[row.id]
        assert row.size == SIZE
        assert row.dest is not None
        assert not (tmp_path / (row.dest + ".part")).exists()
    assert counters.get("media 206", 0) >= 1  # the killed file was resumed
    assert not list(out.rglob("*.part"))
    assert verified.returncode == 0, verified.stdout
    assert json.loads(verified.stdout)["ok"] == 2


def test_verify_flags_changed_and_missing_files(tmp_path: Path) -> None:
    """``verify`` re-hashes files: a changed one and a deleted one are flagged."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\n")
    config = SimConfig(
        admin=True, seed=4, time_scale=1000.0, faults=Faults(fail_rate=0.0)
    )
    db = tmp_path / "k.db"
    out = tmp_path / "out"
    with SimServer(config) as server:
        env = cli_env(server, db)
        stored = klingmon(*FAST_FLAGS, "submit", str(prompts), "-b", "v", env=env)
        assert stored.returncode == 0, stored.stderr
        quiet = (*FAST_FLAGS, "--no-download")
        assert klingmon(*quiet, "watch", "v", "--json", env=env).returncode == 0
        got = klingmon("download", "v", "--out", str(out), env=env)
        assert got.returncode == 0, got.stderr
        assert f"Files under {out}" in got.stdout
        files = sorted(p for p in out.rglob("*.mp4"))
        assert len(files) == 3
        files[0].write_bytes(b"tampered")
        files[1].unlink()
        checked = klingmon("verify", "v", "--json", "--requeue", env=env)
        assert checked.returncode == 5
        states = sorted(f["check"] for f in json.loads(checked.stdout)["files"])
        assert states == ["changed", "missing", "ok"]
        fixed = klingmon("download", "v", "--out", str(out), env=env)
        assert fixed.returncode == 0, fixed.stderr
        assert klingmon("verify", "v", env=env).returncode == 0
        with Store.open(str(db)) as store:
            served = {
                r.dest: server.sim.media_sha256(r.url)
                for r in store.downloads.download_rows()
            }
    # The changed file was fetched anew, not adopted as it was found.
    for path in files:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == served[str(path)]
