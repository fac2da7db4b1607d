"""Adopting new-generation tasks: track by id in one batch, import by product type."""

from __future__ import annotations

import pytest

from klingmon.api import AsyncKlingClient, GenericRequest, KlingClient
from klingmon.engine import Monitor
from klingmon.errors import NothingToDoError, TaskNotFoundError
from klingmon.store import Store

_VIDEO = "/text-to-video/kling-3.0"
_IMAGE = "/image-generation/kling-3.0"


def _make(sim_server, path: str, body: dict[str, object]) -> str:
    with KlingClient(base_url=sim_server.url, api_key="sim-api-key") as client:
        return client.submit(GenericRequest(task_path=path, payload=body)).task_id


def _monitor(sim_server, tmp_path) -> Monitor:
    client = AsyncKlingClient(base_url=sim_server.url, api_key="sim-api-key")
    return Monitor(store=Store.open(str(tmp_path / "k.db")), client=client)


async def test_track_asks_all_ids_in_one_query_and_refuses_unknown_ones(
    sim_server, tmp_path
):
    """Known ids are adopted through one GET /tasks; an unknown id stores nothing."""
    ids = [_make(sim_server, _VIDEO, {"prompt": f"p{i}"}) for i in range(3)]
    monitor = _monitor(sim_server, tmp_path)
    with pytest.raises(TaskNotFoundError, match="no task 424242"):
        await monitor.track(_VIDEO, [ids[0], "424242"])
    assert monitor.store.tasks.batches() == []
    before = sim_server.sim.counters()["requests_by_route"]
    row = await monitor.track(_VIDEO, ids, batch="mine")
    after = sim_server.sim.counters()["requests_by_route"]
    tasks = monitor.store.tasks.tasks(row.id)
    assert sorted(t.task_id for t in tasks) == sorted(ids)
    assert {t.endpoint for t in tasks} == {_VIDEO}
    asked = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k)}
    assert sum(asked.values()) == 1
    await monitor.client.aclose()


async def test_import_takes_the_paths_product_type_only(sim_server, tmp_path):
    """An image path imports the image tasks; the video ones stay for a video path."""
    video = _make(sim_server, _VIDEO, {"prompt": "a fox"})
    image = _make(sim_server, _IMAGE, {"prompt": "a cat", "n": 2})
    monitor = _monitor(sim_server, tmp_path)
    images = await monitor.import_recent(_IMAGE, batch="images")
    assert [t.task_id for t in monitor.store.tasks.tasks(images.id)] == [image]
    videos = await monitor.import_recent(_VIDEO, batch="videos", since_ms=0)
    assert [t.task_id for t in monitor.store.tasks.tasks(videos.id)] == [video]
    with pytest.raises(NothingToDoError):
        await monitor.import_recent(_VIDEO)
    await monitor.client.aclose()
