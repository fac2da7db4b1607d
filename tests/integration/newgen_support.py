"""The mixed batch of both API generations, and a monitor that speaks both."""

from __future__ import annotations

from typing import TYPE_CHECKING

from klingmon.api import (
    AsyncKlingClient,
    GenericRequest,
    RetryPolicy,
    TaskRequest,
    Text2VideoRequest,
)
from klingmon.downloads import DownloadSettings
from klingmon.engine import EngineSettings, Monitor
from klingmon.policy import SchedulePolicy
from klingmon.store import Store

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from klingmon.sim import Simulator

T2V3 = "/text-to-video/kling-3.0"
OMNI = "/omni-video/kling-3.0-omni"
IMAGES = "/image-generation/kling-3.0"
#: Images per image task: it takes that many slots of its pool, and owes that
#: many files.
IMAGE_COUNT = 3
FAST = SchedulePolicy(
    target_lag=0.05, min_interval=0.02, max_interval=0.25, safety_interval=1.0
)


def mixed_batch(rounds: int) -> list[TaskRequest]:
    """Per round: a legacy text2video, a Kling 3.0 and an omni video, an image set."""
    batch: list[TaskRequest] = []
    for i in range(rounds):
        batch += [
            Text2VideoRequest(prompt=f"legacy clip {i}"),
            GenericRequest(
                task_path=T2V3,
                payload={"prompt": f"a heron {i}", "settings": {"duration": 5}},
            ),
            GenericRequest(task_path=OMNI, payload={"prompt": f"an omni scene {i}"}),
            GenericRequest(
                task_path=IMAGES, payload={"prompt": f"a poster {i}", "n": IMAGE_COUNT}
            ),
        ]
    return batch


def newgen_monitor(
    url: str,
    sim: Simulator,
    db: Path,
    out: Path,
    *,
    slots: int = 20,
    tasks_batch_size: int = 50,
    transport: httpx.AsyncBaseTransport | None = None,
    pools: dict[str, int] | None = None,
) -> Monitor:
    """A monitor with both credentials, downloading into ``out``."""
    client = AsyncKlingClient(
        base_url=url,
        transport=transport,
        access_key=sim.config.access_key,
        secret_key=sim.config.secret_key,
        api_key=sim.config.api_key,
        retry=RetryPolicy(attempts=5, base=0.01, cap=0.05),
    )
    return Monitor(
        store=Store.open(str(db)),
        client=client,
        settings=EngineSettings(
            slots=slots,
            pools=tuple((pools or {}).items()),
            rate=200.0,
            max_rate=500.0,
            schedule=FAST,
            submit_backoff_base=0.02,
            submit_backoff_cap=0.2,
            idle_max=0.1,
            watchdog_interval=0.05,
            seed=1,
            tasks_batch_size=tasks_batch_size,
            downloads=DownloadSettings(
                out=str(out),
                allow_origins=(url,),
                backoff_base=0.01,
                backoff_cap=0.05,
            ),
        ),
    )
