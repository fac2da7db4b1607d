"""SQLite checkpoints in a thread of their own: no commit pays for one.

Real SQLite files; the thread's own timing is not waited on: each test calls
:meth:`Checkpointer.checkpoint` where the thread would.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from klingmon.store import NewTask, Store, checkpoints
from klingmon.store._checkpoint import CEILING

if TYPE_CHECKING:
    from pathlib import Path

#: Transactions of about 60 pages each: 1,800 pages in all, past SQLite's 1,000.
ROUNDS = 30


def _write_many(store: Store) -> None:
    for k in range(ROUNDS):
        tasks = [
            NewTask("/v1/videos/text2video", {"prompt": f"{k}-{i} " + "x" * 20_000})
            for i in range(12)
        ]
        store.tasks.create_batch(f"b{k}", tasks, 1_700_000_000_000 + k)


def _frames(store: Store) -> int:
    """Pages in the write-ahead log now (a PASSIVE checkpoint's count)."""
    return checkpoints(store).checkpoint()[1]


def test_with_checkpoints_in_their_thread_no_commit_checkpoints(tmp_path: Path):
    """Every page the commits wrote is still in the log, for the thread to copy in
    one checkpoint; without it SQLite's commits checkpointed on their own."""
    with Store.open(str(tmp_path / "on.db")) as store:
        checkpointer = checkpoints(store, interval=3600.0)
        checkpointer.start()
        try:
            with store._engine.connect() as conn:
                ceiling = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
            assert ceiling == CEILING
            _write_many(store)
            busy, logged, copied = checkpointer.checkpoint()
        finally:
            checkpointer.stop()
        assert busy == 0
        assert logged > 1000
        assert copied == logged
        assert len(store.tasks.tasks()) == ROUNDS * 12
    with Store.open(str(tmp_path / "off.db")) as store:
        _write_many(store)
        assert _frames(store) < logged  # commits restarted the log on their own


def test_a_store_without_a_file_has_nothing_to_checkpoint():
    with Store.open("sqlite://") as store:
        checkpointer = checkpoints(store)
        assert not checkpointer.active
        with checkpointer:
            assert checkpointer.checkpoint() == (0, 0, 0)
        assert repr(checkpointer) == "Checkpointer(interval=0.5, running=False)"


def test_the_thread_starts_and_stops_with_the_block(tmp_path: Path):
    with Store.open(str(tmp_path / "k.db")) as store:
        checkpointer = checkpoints(store)
        with checkpointer:
            assert repr(checkpointer) == "Checkpointer(interval=0.5, running=True)"
            store.tasks.create_batch("b", [NewTask("text2video", {"prompt": "p"})], 1)
        assert repr(checkpointer) == "Checkpointer(interval=0.5, running=False)"
        names = [t.name for t in threading.enumerate()]
        assert "klingmon-checkpoints" not in names
