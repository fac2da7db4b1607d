"""Builders shared by the engine tests: a monitor wired to a simulator."""

from __future__ import annotations

from typing import TYPE_CHECKING

from klingmon.api import AsyncKlingClient, RetryPolicy
from klingmon.engine import EngineSettings, Monitor
from klingmon.policy import SchedulePolicy, StuckPolicy
from klingmon.store import Store

if TYPE_CHECKING:
    from pathlib import Path

    from klingmon._clock import Clock
    from klingmon.sim import Simulator

#: Real-time tests run the simulator at x1000 or more: polls must be as quick.
FAST = SchedulePolicy(
    target_lag=0.05, min_interval=0.02, max_interval=0.25, safety_interval=1.0
)


def loopback_monitor(
    url: str,
    sim: Simulator,
    db: Path,
    *,
    slots: int = 5,
    schedule: SchedulePolicy = FAST,
    stuck: StuckPolicy | None = None,
    rate: float = 200.0,
) -> Monitor:
    """A monitor talking HTTP to a SimServer at ``url``."""
    client = AsyncKlingClient(
        base_url=url,
        access_key=sim.config.access_key,
        secret_key=sim.config.secret_key,
        retry=RetryPolicy(attempts=5, base=0.01, cap=0.05),
    )
    return Monitor(
        store=Store.open(str(db)),
        client=client,
        settings=EngineSettings(
            slots=slots,
            rate=rate,
            max_rate=max(rate, 500.0),
            schedule=schedule,
            stuck=stuck or StuckPolicy(),
            submit_backoff_base=0.02,
            submit_backoff_cap=0.2,
            idle_max=0.1,
            watchdog_interval=0.05,
            seed=1,
        ),
    )


def virtual_monitor(
    sim: Simulator,
    db: Path,
    clock: Clock,
    *,
    slots: int = 5,
    stuck: StuckPolicy | None = None,
) -> Monitor:
    """A monitor on the simulator's in-process transport and a shared virtual clock."""
    client = AsyncKlingClient(
        base_url="http://sim.test",
        access_key=sim.config.access_key,
        secret_key=sim.config.secret_key,
        transport=sim.transport(),
        clock=clock,
    )
    return Monitor(
        store=Store.open(str(db)),
        client=client,
        clock=clock,
        settings=EngineSettings(slots=slots, stuck=stuck or StuckPolicy(), seed=1),
    )
