"""/metrics shows each concurrency pool: slots used, tasks, queued, limit."""

from __future__ import annotations

import time

import pytest
from web_support import app_for, client, fresh_clock, tracked_store

from klingmon._clock import to_ms
from klingmon.store import NewTask


@pytest.fixture
def clock():
    return fresh_clock()


async def test_metrics_show_each_pool(tmp_path, clock):
    with tracked_store(tmp_path, clock) as store:
        images = [
            NewTask("/image-generation/kling-3.0", {"prompt": "p", "n": 4})
            for _ in range(3)
        ]
        store.tasks.create_batch("img", images, to_ms(clock.now()))
        now_ms = int(time.time() * 1000)
        store.tasks.claim_submissions("w", now_ms, 600_000, slots=8)  # two of 4
        store.fleet.heartbeat(
            "h:1:w", now_ms, {"slots": 5, "pools": {"kling-3.0/image": 8}}
        )
        async with client(app_for(store, clock)) as http:
            text = (await http.get("/metrics")).text
    # The tracked store's two submitted legacy tasks, and the leased images.
    assert 'klingmon_pool_slots_used{pool="kling-v1/video"} 2.0' in text
    assert 'klingmon_pool_size{pool="kling-v1/video"} 5.0' in text
    assert 'klingmon_pool_slots_used{pool="kling-3.0/image"} 8.0' in text
    assert 'klingmon_pool_tasks_in_flight{pool="kling-3.0/image"} 2.0' in text
    assert 'klingmon_pool_tasks_queued{pool="kling-3.0/image"} 3.0' in text
    assert 'klingmon_pool_size{pool="kling-3.0/image"} 8.0' in text


async def test_the_dashboard_has_a_pools_card(tmp_path, clock):
    with tracked_store(tmp_path, clock) as store:
        images = [
            NewTask("/image-generation/kling-3.0", {"prompt": "p", "n": 4})
            for _ in range(3)
        ]
        store.tasks.create_batch("img", images, to_ms(clock.now()))
        now_ms = int(time.time() * 1000)
        store.tasks.claim_submissions("w", now_ms, 600_000, slots=8)
        store.fleet.heartbeat(
            "h:1:w", now_ms, {"slots": 5, "pools": {"kling-3.0/image": 8}}
        )
        async with client(app_for(store, clock)) as http:
            page = (await http.get("/")).text
    assert 'id="pools"' in page
    assert "kling-3.0/image: 8 / 8 · 3 queued" in page
    assert "kling-v1/video: 2 / 5" in page
