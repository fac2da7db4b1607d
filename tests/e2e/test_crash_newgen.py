"""SIGKILL the real ``klingmon`` on a batch of both API generations: nothing lost.

The batch mixes a legacy text2video, Kling 3.0 and omni videos (the new generation)
and an image set with n > 1. The process is killed while it submits and while it
watches, and restarted each time; at the end every task has ended, the simulator
saw exactly one create per ``external_task_id``, every output file is on disk with
the hash the simulator serves, and every finished task has its units.
"""

from __future__ import annotations

import hashlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_support import FAST_FLAGS, cli_env, klingmon, spawn

from klingmon.api import GenericRequest, TaskRequest, Text2VideoRequest
from klingmon.domain import TERMINAL, TaskStatus
from klingmon.engine import new_task
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from collections.abc import Callable

    from klingmon.store import TaskRow

ROUNDS = 6
IMAGE_COUNT = 3
#: When each kill comes: what the store must show first.
_SUBMITTING = "submitting"
_WATCHING = "watching"
KILLS = (_SUBMITTING, _SUBMITTING, _WATCHING, _WATCHING)


def _batch() -> list[TaskRequest]:
    batch: list[TaskRequest] = []
    for i in range(ROUNDS):
        batch += [
            Text2VideoRequest(prompt=f"legacy clip {i}"),
            GenericRequest(
                task_path="/text-to-video/kling-3.0",
                payload={"prompt": f"a heron {i}", "settings": {"duration": 5}},
            ),
            GenericRequest(
                task_path="/omni-video/kling-3.0-omni",
                payload={"prompt": f"an omni scene {i}"},
            ),
            GenericRequest(
                task_path="/image-generation/kling-3.0",
                payload={"prompt": f"a poster {i}", "n": IMAGE_COUNT},
            ),
        ]
    return batch


def _moment(phase: str) -> Callable[[list[TaskRow]], bool]:
    """Whether the store shows the moment to kill in ``phase``."""

    def submitting(tasks: list[TaskRow]) -> bool:
        sent = sum(t.task_id is not None for t in tasks)
        return 0 < sent < len(tasks)

    def watching(tasks: list[TaskRow]) -> bool:
        ended = sum(t.status in TERMINAL for t in tasks)
        return all(t.task_id for t in tasks) and ended < len(tasks)

    return submitting if phase == _SUBMITTING else watching


def _kill_when(
    db: Path, phase: str, env: dict[str, str], flags: tuple[str, ...]
) -> str:
    """Run ``watch``, SIGKILL it at the moment ``phase`` names; what was seen then."""
    proc = spawn(*flags, "watch", "mixed", "--json", env=env)
    ready = _moment(phase)
    deadline = time.monotonic() + 30
    seen = "never"
    with Store.open(str(db)) as store:
        batch = store.tasks.batch("mixed")
        assert batch is not None
        while time.monotonic() < deadline and proc.poll() is None:
            tasks = store.tasks.tasks(batch.id)
            if ready(tasks):
                seen = ",".join(sorted({t.status.value for t in tasks}))
                break
            time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL, err
    return seen


@pytest.mark.timeout(120)
def test_sigkill_on_a_mixed_batch_of_both_generations(tmp_path: Path) -> None:
    """Kills while submitting and watching: all end, one create each, files hashed."""
    started = time.monotonic()
    config = SimConfig(
        admin=True,
        seed=21,
        time_scale=150.0,
        slots=20,
        video_slots=20,
        image_slots=60,
        faults=Faults(fail_rate=0.0, drop_create_rate=0.05),
    )
    db = tmp_path / "crash.db"
    with SimServer(config) as server:
        with Store.open(str(db)) as store:
            store.tasks.create_batch(
                "mixed", [new_task(r) for r in _batch()], int(time.time() * 1000)
            )
        env = cli_env(server, db, KLING_API_KEY=server.sim.config.api_key or "")
        flags = ("--slots", "20", *FAST_FLAGS)
        moments = [_kill_when(db, phase, env, flags) for phase in KILLS]
        final = klingmon(*flags, "watch", "mixed", "--json", env=env, timeout=60)
        counters = server.sim.counters()
        with Store.open(str(db)) as store:
            batch = store.tasks.batch("mixed")
            assert batch is not None
            tasks = store.tasks.tasks(batch.id)
            rows = store.downloads.download_rows(batch.id)
        digests = {row.url: server.sim.media_sha256(row.url) for row in rows}
    assert final.returncode == 0, final.stderr
    assert json.loads(final.stdout)["done"] is True
    assert "never" not in moments, moments
    assert len(tasks) == 4 * ROUNDS
    assert {t.status for t in tasks} == {TaskStatus.SUCCEED}
    creates = counters["creates_per_external_id"]
    assert sorted(creates) == sorted(t.external_task_id for t in tasks)
    assert set(creates.values()) == {1}, {k: v for k, v in creates.items() if v != 1}
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    assert {t.task_id: t.status.value for t in tasks} == truth
    owed = sum(
        len(files)
        for t in tasks
        for files in (t.result or {}).values()
        if isinstance(files, list)
    )
    assert owed == ROUNDS * (3 + IMAGE_COUNT)
    assert len(rows) == owed
    assert {row.status for row in rows} == {"done"}
    for row in rows:
        assert row.dest is not None
        digest = hashlib.sha256(Path(row.dest).read_bytes()).hexdigest()
        assert digest == row.sha256 == digests[row.url]
    assert all(t.units is not None and t.units > 0 for t in tasks)
    print(  # noqa: T201 - the figures the report quotes
        f"kills at {moments}; creates per id {set(creates.values())}; "
        f"{len(rows)} files; {time.monotonic() - started:.1f} s",
        file=sys.stderr,
    )
