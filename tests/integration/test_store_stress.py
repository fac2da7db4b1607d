"""The SQLite store under stress: concurrent processes, a full disk, hostile files.

Each test names the protection it guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING

import pytest
from engine_support import loopback_monitor

from klingmon._clock import to_ms
from klingmon.api import Text2VideoRequest
from klingmon.domain import TERMINAL
from klingmon.errors import StoreError
from klingmon.sim import Faults, SimConfig
from klingmon.store import NewTask, Store
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

ENDPOINT = "/v1/videos/text2video"


def _loop(
    store: Store, step: Callable[[Store, int], None], stop: threading.Event
) -> tuple[threading.Thread, list[int], list[BaseException]]:
    """Run ``step`` on ``store`` until ``stop``; count rounds, keep any error."""
    rounds = [0]
    errors: list[BaseException] = []

    def run() -> None:
        while not stop.is_set():
            try:
                step(store, rounds[0])
            except BaseException as exc:
                errors.append(exc)
                return
            rounds[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, rounds, errors


def _read(store: Store, _i: int) -> None:
    store.tasks.batches()
    store.tasks.count_by_status()
    store.reports.report()


def _write(store: Store, i: int) -> None:
    store.meta.set(f"stress-{i % 7}", str(i))
    task = NewTask(endpoint=ENDPOINT, body={"prompt": f"w{i}"}, prompt=f"w{i}")
    store.tasks.create_batch(f"w{i}", [task], to_ms(time.time()))


def test_engine_finishes_under_concurrent_readers_and_writers(tmp_path: Path):
    """Guards WAL, busy timeout and immediate writes: no 'database is locked'."""
    db = tmp_path / "k.db"
    config = SimConfig(seed=5, time_scale=2000.0, faults=Faults(fail_rate=0.1))
    with SimServer(config) as server:
        monitor = loopback_monitor(server.url, server.sim, db)
        monitor.submit(
            [Text2VideoRequest(prompt=f"p{i}") for i in range(20)], batch="b"
        )
        stop = threading.Event()
        with Store.open(str(db)) as reader, Store.open(str(db)) as writer:
            threads = [_loop(reader, _read, stop), _loop(writer, _write, stop)]

            async def run() -> None:
                try:
                    await monitor.run(batch="b")
                finally:
                    await monitor.aclose()

            try:
                asyncio.run(run())
            finally:
                stop.set()
                for thread, _, _ in threads:
                    thread.join(timeout=20)
            for _, rounds, errors in threads:
                assert not errors, errors
                assert rounds[0] > 0
            batch = reader.tasks.batch("b")
            assert batch is not None
            statuses = {t.status for t in reader.tasks.tasks(batch.id)}
            assert statuses <= TERMINAL, statuses
            assert len(reader.tasks.tasks(batch.id)) == 20


@contextlib.contextmanager
def _tmpfs(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem is full."""
    with path.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def _write_until_full(store: Store, big: str, now: int) -> None:
    for i in range(100):
        task = NewTask(endpoint=ENDPOINT, body={"prompt": big}, prompt=big)
        store.tasks.create_batch(f"big{i}", [task], now)


def test_full_disk_is_a_clear_store_error_and_loses_nothing(tmp_path: Path):
    """Guards the write path's StoreError: ENOSPC is one clear line; data is kept."""
    with _tmpfs(tmp_path / "small", "768k") as mnt:
        db = mnt / "k.db"
        now = to_ms(time.time())
        store = Store.open(str(db))
        try:
            tasks = [
                NewTask(endpoint=ENDPOINT, body={"prompt": f"p{i}"}, prompt=f"p{i}")
                for i in range(5)
            ]
            store.tasks.create_batch("kept", tasks, now)
            _fill(mnt / "filler")
            big = "x" * 60_000
            with pytest.raises(StoreError) as caught:
                _write_until_full(store, big, now)
            message = str(caught.value)
            assert "\n" not in message
            assert "full" in message, message
            assert big not in message
        finally:
            store.close()
        (mnt / "filler").unlink()
        with Store.open(str(db)) as reopened:
            batch = reopened.tasks.batch("kept")
            assert batch is not None
            assert len(reopened.tasks.tasks(batch.id)) == 5
            reopened.meta.set("after", "ok")  # writable again
            assert reopened.meta.get("after") == "ok"


def _cli(db: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "klingmon", "--db", str(db), "status"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _foreign(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount REAL)")
        conn.execute("CREATE TABLE alembic_version (version_num VARCHAR(32))")
        conn.execute("INSERT INTO alembic_version VALUES ('f00dfeed1234')")
    conn.close()


def _tables(path: Path) -> list[tuple[str, ...]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT name FROM sqlite_master UNION ALL SELECT * FROM alembic_version"
        ).fetchall()
    finally:
        conn.close()
    return sorted(rows)


@pytest.mark.parametrize("kind", ["garbage", "foreign"])
def test_cli_on_a_bad_database_exits_7_with_one_error_line(tmp_path: Path, kind: str):
    """Guards Store.open's refusals via the CLI: exit 7, one Error: line, no trace."""
    db = tmp_path / "bad.db"
    if kind == "garbage":
        db.write_bytes(b"this is not a database at all\n" * 200)
    else:
        _foreign(db)
    before = _tables(db) if kind == "foreign" else db.read_bytes()
    done = _cli(db)
    assert done.returncode == 7, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("Error:")
    assert "Traceback" not in done.stderr + done.stdout
    # Refused before migrating anything into it.
    assert (_tables(db) if kind == "foreign" else db.read_bytes()) == before


def test_foreign_revision_is_a_store_error_at_open(tmp_path: Path):
    """A SQLite file at an unknown alembic revision is refused, naming the revision."""
    db = tmp_path / "foreign.db"
    _foreign(db)
    with pytest.raises(StoreError, match="f00dfeed1234"):
        Store.open(str(db))
