"""How long ``klingmon quote`` takes on a large batch file (not a timed test).

A 10,000-row JSONL file of mixed kinds (legacy text2video in two modes and lengths,
new-generation kling-3.0 at two resolutions, image tasks with ``n``), quoted over a
store that has learned the prices and durations of a few hundred finished tasks: once
in process (read the file, quote it) and once as the real command in a subprocess
(Python's start-up included), without asking ``/account/costs``. Target: under 2 s.

    python -m bench.quote [rows]
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from klingmon.api import Task, snapshot
from klingmon.batchfile import read_batch_file
from klingmon.config import Settings
from klingmon.runtime import build_runtime
from klingmon.store import NewTask, Observation, Store

_ROWS: list[dict[str, Any]] = [
    {"prompt": "a fox in snow", "mode": "std", "duration": "5"},
    {"prompt": "a boat at dawn", "mode": "pro", "duration": "10"},
    {
        "endpoint": "/text-to-video/kling-3.0",
        "prompt": "a city at night",
        "resolution": "1080p",
        "duration": 8,
    },
    {"endpoint": "/text-to-video/kling-3.0", "prompt": "rain", "resolution": "720p"},
    {"endpoint": "/v1/images/generations", "prompt": "a cat", "n": 4},
]


def _file(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(rows):
            row = dict(_ROWS[i % len(_ROWS)])
            row["prompt"] = f"{row['prompt']} {i}"
            out.write(json.dumps(row) + "\n")


def _history(db: Path, n: int = 300) -> None:
    """``n`` finished legacy tasks with charges: learned prices and durations."""
    t0 = 1_700_000_000_000
    with Store.open(str(db)) as store:
        tasks = [
            NewTask("/v1/videos/text2video", {"prompt": f"h{i}"}) for i in range(n)
        ]
        store.tasks.create_batch("history", tasks, t0)
        rows = store.tasks.claim_submissions("b", t0, 60_000, slots=n)
        for row in rows:
            store.tasks.mark_submitting(row.id, t0)
            wire = {"task_id": f"k{row.id}", "task_status": "submitted"}
            submitted = snapshot(Task.model_validate(wire | {"updated_at": t0}))
            store.tasks.mark_submitted(row.id, submitted, t0, t0)
        done = [
            Observation(
                row.id,
                snapshot(
                    Task.model_validate(
                        {
                            "task_id": f"k{row.id}",
                            "task_status": "succeed",
                            "updated_at": t0 + 90_000,
                            "final_unit_deduction": "1",
                        }
                    )
                ),
                "poll",
                t0 + 90_000,
            )
            for row in rows
        ]
        store.watch.apply(done, t0 + 90_000)


def main(rows: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path, db = Path(tmp) / "big.jsonl", Path(tmp) / "k.db"
        _file(path, rows)
        _history(db)
        start = time.perf_counter()
        requests = [r.request for r in read_batch_file(path)]
        with build_runtime(Settings(db=str(db))) as runtime:
            quote = runtime.monitor().quote(requests)
        in_process = time.perf_counter() - start
        env = {k: v for k, v in os.environ.items() if not k.startswith("KLING")}
        env["KLINGMON_DB"] = str(db)
        start = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "-m", "klingmon", "quote", str(path), "--no-account"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        command = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    sources = sorted({str(line.source) for line in quote.lines})
    print(
        f"quote of {rows} rows ({len(quote.lines)} lines, {quote.units:g} units, "
        f"prices {'/'.join(sources)}): in process {in_process:.2f} s, "
        f"`klingmon quote` {command:.2f} s wall, {cpu:.2f} s CPU (target < 2 s)"
    )
    print(done.stderr.strip().splitlines()[-2])


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
