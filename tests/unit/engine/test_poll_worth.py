"""The poll schedule prices a finish by the slots it frees: an image task of ``n``."""

from __future__ import annotations

import dataclasses
import random
from typing import TYPE_CHECKING

import pytest

from klingmon.domain import TaskStatus
from klingmon.engine import EngineSettings
from klingmon.engine._shared import CallbackDrops, CallbackFlow, Demand, PollPlanner
from klingmon.policy import DurationBook
from klingmon.store import Store, TaskRow
from klingmon.testing import VirtualClock

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

NOW_MS = 1_780_000_000_000
ENDPOINT = "/image-generation/kling-3.0"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(f"sqlite:///{tmp_path / 'k.db'}")
    yield store
    store.close()


def _processing(i: int, *, slots: int, elapsed_s: float) -> TaskRow:
    """A task Kling has been processing for ``elapsed_s``, holding ``slots``."""
    started = NOW_MS - int(elapsed_s * 1000)
    return TaskRow(
        id=i, batch_id=1, seq=i, endpoint=ENDPOINT, body={"prompt": "p", "n": slots},
        prompt="p", model_name="kling-3.0", mode=None, duration=None,
        external_task_id=f"e-{i}", task_id=f"t-{i}", status=TaskStatus.PROCESSING,
        status_msg=None, kling_created_ms=started, kling_updated_ms=started,
        created_ms=started, submitted_ms=started, processing_ms=started,
        finished_ms=None, phase_ms=started, next_poll_ms=None, lease_owner=None,
        lease_until_ms=None, submit_attempts=1, polls=0, result=None, units=None,
        watch_timeout=False, stuck=False, deadline_ms=None, retry_of=None,
        last_error=None, learned_via=None, pool="kling-3.0/image", slots=slots,
    )  # fmt: skip


def _planner(store: Store, settings: EngineSettings) -> PollPlanner:
    clock = VirtualClock(start=NOW_MS / 1000)
    flow = CallbackFlow(store, clock, settings)
    return PollPlanner(
        settings,
        DurationBook(),
        flow,
        random.Random(1),
        Demand(),
        drops=CallbackDrops(),
    )


@pytest.mark.parametrize("elapsed_s", [30.0, 60.0, 90.0])
def test_a_group_holding_more_slots_is_polled_sooner(store, elapsed_s):
    """Work waits: two images of n=4 free eight slots, two videos free two; the
    first group's rounds come closer together (the square-root rule over the slots
    freed a second), never below ``min_interval``."""
    settings = EngineSettings(slots=10)
    video = [_processing(i, slots=1, elapsed_s=elapsed_s) for i in (1, 2)]
    image = [dataclasses.replace(r, slots=4) for r in video]
    one = _planner(store, settings).price("g", video, NOW_MS)
    four = _planner(store, settings).price("g", image, NOW_MS)
    low = settings.schedule.min_interval
    assert low <= four <= one
    if one > low:
        assert four < one
