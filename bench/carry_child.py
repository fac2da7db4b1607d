"""One engine process carrying a batch from submit to downloaded (``bench.realtime``).

``python -m bench.carry_child URL DB OUT TASKS SLOTS SCALE`` prints one JSON line:
wall, CPU seconds and peak RSS of this process (the simulator runs elsewhere).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import resource
import sys
import time
import warnings
from typing import Any

from klingmon.api import GenericRequest
from klingmon.config import Secret, Settings
from klingmon.policy import SchedulePolicy
from klingmon.runtime import Runtime, build_runtime


def runtime(url: str, db: str, out: str, slots: int, scale: float) -> Runtime:
    """Defaults, with Kling time ``scale`` times faster: the schedule scales with it."""
    base = SchedulePolicy()
    policy = SchedulePolicy(
        target_lag=base.target_lag / scale,
        min_interval=base.min_interval / scale,
        max_interval=base.max_interval / scale,
        safety_interval=base.safety_interval / scale,
    )
    settings = Settings(
        db=db,
        api_base=url,
        access_key="sim-access-key",
        secret_key=Secret("sim-secret-key-for-the-benchmarks-0123"),
        slots=slots,
        rate=2000.0,
        download_dir=out,
        download_origins=(url,),
    )
    downloads = dataclasses.replace(settings.downloads, sidecar=False)
    engine = {
        "max_rate": 5000.0,
        "schedule": policy,
        "idle_max": 0.05,
        "watchdog_interval": 1.0,
        "seed": 1,
        "downloads": downloads,
    }
    return build_runtime(settings, engine=engine)


async def carry(  # noqa: PLR0917 - argv, positionally
    url: str, db: str, out: str, n: int, slots: int, scale: float
) -> Any:
    parts = runtime(url, db, out, slots, scale)
    monitor = parts.monitor(parts.client())
    body = {"model_name": "kling-v2-master", "duration": "5"}
    requests = [
        GenericRequest(
            task_path="/v1/videos/text2video", payload={**body, "prompt": f"clip {i}"}
        )
        for i in range(n)
    ]
    batch = monitor.submit(requests, batch="carry")
    started = time.perf_counter()
    await monitor.run(batch=batch.id)
    wall = time.perf_counter() - started
    counts = {
        str(k): v for k, v in monitor.store.tasks.count_by_status(batch.id).items()
    }
    await monitor.aclose()
    return wall, counts


def main() -> None:
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    url, db, out = sys.argv[1:4]
    n, slots, scale = int(sys.argv[4]), int(sys.argv[5]), float(sys.argv[6])
    wall, counts = asyncio.run(carry(url, db, out, n, slots, scale))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "wall_s": wall,
                "cpu_s": usage.ru_utime + usage.ru_stime,
                "peak_rss_mb": usage.ru_maxrss / 1024,
                "counts": counts,
            }
        )
    )


if __name__ == "__main__":
    main()
