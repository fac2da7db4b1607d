"""The engine on both API generations at once, over loopback HTTP to the simulator."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from newgen_support import IMAGE_COUNT, IMAGES, OMNI, T2V3, mixed_batch, newgen_monitor

from klingmon.api import AsyncKlingClient, GenericRequest, generation_of
from klingmon.domain import Snapshot, TaskStatus
from klingmon.engine import EngineSettings, Monitor
from klingmon.errors import ConfigError
from klingmon.sim import Faults, SimConfig
from klingmon.store import NewTask, Store
from klingmon.testing import SimServer


def _files_owed(result: dict[str, object] | None) -> int:
    return sum(
        len(v) for v in (result or {}).values() if isinstance(v, list)
    )  # videos, images, ... each a list of files


async def test_mixed_batch_runs_to_the_end_on_batched_queries(tmp_path: Path) -> None:
    """Legacy and new tasks end, files land hashed, units are kept, queries batch."""
    config = SimConfig(
        admin=True,
        seed=11,
        time_scale=1000.0,
        slots=20,
        video_slots=20,
        image_slots=40,
        faults=Faults(fail_rate=0.0),
    )
    out = tmp_path / "out"
    with SimServer(config) as server:
        monitor = newgen_monitor(server.url, server.sim, tmp_path / "k.db", out)
        batch = monitor.submit(mixed_batch(10), batch="mixed")
        await asyncio.wait_for(monitor.run(batch=batch.id), timeout=50)
        await monitor.aclose()
        counters = server.sim.counters()
        tasks = monitor.store.tasks.tasks(batch.id)
        rows = monitor.store.downloads.download_rows(batch.id)
        digests = {row.url: server.sim.media_sha256(row.url) for row in rows}
    assert len(tasks) == 40
    assert {t.status for t in tasks} == {TaskStatus.SUCCEED}
    creates = counters["creates_per_external_id"]
    assert sorted(creates) == sorted(t.external_task_id for t in tasks)
    assert set(creates.values()) == {1}
    for task in tasks:
        assert task.units is not None, task.endpoint
        assert task.units > 0, task.endpoint
    images = [t for t in tasks if t.endpoint == IMAGES]
    assert all(len((t.result or {})["images"]) == IMAGE_COUNT for t in images)
    assert len(rows) == sum(_files_owed(t.result) for t in tasks)
    assert {row.status for row in rows} == {"done"}
    for row in rows:
        assert row.dest is not None
        path = Path(row.dest)
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digests[row.url]
    by_route = counters["requests_by_route"]
    new_tasks = [t for t in tasks if generation_of(t.endpoint).value == "2026"]
    polls = sum(t.polls for t in new_tasks)
    queries = by_route.get("tasks_get", 0) + by_route.get("tasks_post", 0)
    # One GET per due task would be one per poll; a batch answers many.
    assert queries * 3 <= polls, (queries, polls)
    assert queries / len(new_tasks) < 1.0, by_route
    assert by_route.get("get", 0) <= 2  # legacy tasks: list pages, as before
    report = monitor.store.reports.counters(batch.id)
    print(  # noqa: T201 - the figure the report quotes
        f"new-gen queries/task {queries / len(new_tasks):.2f}, "
        f"polls {polls}, by route {by_route}, engine counts {report}"
    )


async def test_lost_answers_and_refused_long_lists(tmp_path: Path) -> None:
    """Dropped create answers are adopted by external id; a refused list shrinks."""
    config = SimConfig(
        admin=True,
        seed=4,
        time_scale=1000.0,
        video_slots=10,
        max_query_ids=3,
        faults=Faults(fail_rate=0, drop_create_rate=0.3),
    )
    out = tmp_path / "out"
    with SimServer(config) as server:
        monitor = newgen_monitor(
            server.url, server.sim, tmp_path / "k.db", out, tasks_batch_size=10
        )
        prompts = [f"p{i}" for i in range(8)]
        batch = monitor.submit(
            [GenericRequest(task_path=T2V3, payload={"prompt": p}) for p in prompts],
            batch="b",
        )
        await asyncio.wait_for(monitor.run(batch=batch.id), timeout=30)
        tasks = monitor.store.tasks.tasks(batch.id)
        await monitor.aclose()
        counters = server.sim.counters()
    assert {t.status for t in tasks} == {TaskStatus.SUCCEED}
    assert set(counters["creates_per_external_id"].values()) == {1}
    assert sorted(counters["creates_per_external_id"]) == sorted(
        t.external_task_id for t in tasks
    )
    assert counters["requests"].get("tasks_get 400-1201", 0) >= 1  # a list refused
    assert counters["requests"].get("create drop", 0) >= 1


async def test_new_generation_needs_an_api_key(tmp_path: Path) -> None:
    """An access/secret pair alone: ConfigError naming KLING_API_KEY, nothing sent."""
    config = SimConfig(admin=True, seed=4, time_scale=1000.0)
    with SimServer(config) as server:
        client = AsyncKlingClient(
            base_url=server.url,
            access_key=server.sim.config.access_key,
            secret_key=server.sim.config.secret_key,
        )
        monitor = Monitor(
            store=Store.open(str(tmp_path / "k.db")),
            client=client,
            settings=EngineSettings(idle_max=0.05, seed=1),
        )
        batch = monitor.submit(
            [GenericRequest(task_path=T2V3, payload={"prompt": "no key"})], batch="k"
        )
        with pytest.raises(ConfigError, match="KLING_API_KEY"):
            await asyncio.wait_for(monitor.run(batch=batch.id), timeout=20)
        [task] = monitor.store.tasks.tasks(batch.id)
        await monitor.aclose()
        counters = server.sim.counters()
    assert task.status is TaskStatus.QUEUED
    assert counters["creates_per_external_id"] == {}
    assert counters["requests_by_route"].get("create", 0) == 0


async def test_sweeps_answer_for_more_tasks_than_a_batch(tmp_path: Path) -> None:
    """More active tasks than a batch holds: sweeps of unfinished tasks carry them."""
    config = SimConfig(
        admin=True,
        seed=8,
        time_scale=1000.0,
        video_slots=20,
        faults=Faults(fail_rate=0.1),
    )
    out = tmp_path / "out"
    with SimServer(config) as server:
        monitor = newgen_monitor(
            server.url, server.sim, tmp_path / "k.db", out, tasks_batch_size=4
        )
        batch = monitor.submit(
            [
                GenericRequest(task_path=path, payload={"prompt": f"p{i}"})
                for i in range(12)
                for path in (T2V3, OMNI)
            ],
            batch="sweep",
        )
        await asyncio.wait_for(monitor.run(batch=batch.id), timeout=30)
        tasks = monitor.store.tasks.tasks(batch.id)
        await monitor.aclose()
        counters = server.sim.counters()
    truth = {tid: t["status"] for tid, t in counters["tasks"].items()}
    assert {t.task_id: t.status.value for t in tasks} == truth
    assert {t.status for t in tasks} <= {TaskStatus.SUCCEED, TaskStatus.FAILED}
    assert TaskStatus.FAILED in {t.status for t in tasks}
    by_route = counters["requests_by_route"]
    assert by_route.get("tasks_post", 0) >= 1
    assert set(counters["creates_per_external_id"].values()) == {1}


async def test_an_id_kling_does_not_show_is_polled_again_not_failed(
    tmp_path: Path,
) -> None:
    """A task missing from a GET /tasks answer stays as it was, polled later."""
    config = SimConfig(admin=True, seed=4, time_scale=1000.0)
    with SimServer(config) as server:
        monitor = newgen_monitor(server.url, server.sim, tmp_path / "k.db", tmp_path)
        store = monitor.store
        ghost = Snapshot(
            task_id="999999999", status=TaskStatus.SUBMITTED, raw_status="submitted"
        )
        now_ms = int(monitor.clock.now() * 1000)
        batch = store.tasks.create_batch(
            "ghost",
            [NewTask(endpoint=T2V3, body={}, external_task_id="ghost-1", task=ghost)],
            now_ms,
        )
        engine = monitor.engine()
        assert await engine.poller.round(monitor.clock.now() + 1)
        [row] = store.tasks.tasks(batch.id)
        await monitor.aclose()
        counters = server.sim.counters()
    assert row.status is TaskStatus.SUBMITTED
    assert row.next_poll_ms is not None
    assert row.next_poll_ms > now_ms
    assert counters["requests_by_route"] == {"tasks_get": 1}


class _SweepLog(httpx.AsyncHTTPTransport):
    """Records each ``POST /tasks`` body and answer (over real loopback HTTP)."""

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: list[tuple[dict[str, Any], dict[str, Any]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await super().handle_async_request(request)
        if request.method == "POST" and request.url.path.endswith("/tasks"):
            await response.aread()
            self.sweeps.append((json.loads(request.content), response.json()))
        return response


async def test_a_sweep_lists_what_is_unfinished_in_one_page(tmp_path: Path) -> None:
    """However many tasks have finished, a sweep asks only for the unfinished ones:
    at most the account's slots, one page; the finished are then asked by id."""
    config = SimConfig(admin=True, seed=3, time_scale=1000.0, video_slots=6)
    log = _SweepLog()
    with SimServer(config) as server:
        monitor = newgen_monitor(
            server.url,
            server.sim,
            tmp_path / "k.db",
            tmp_path / "out",
            slots=6,
            tasks_batch_size=3,
            transport=log,
        )
        batch = monitor.submit(
            [
                GenericRequest(task_path=T2V3, payload={"prompt": f"p{i}"})
                for i in range(30)
            ],
            batch="unfinished",
        )
        await asyncio.wait_for(monitor.run(batch=batch.id), timeout=30)
        tasks = monitor.store.tasks.tasks(batch.id)
        await monitor.aclose()
        counters = server.sim.counters()
    assert {t.status for t in tasks} <= {TaskStatus.SUCCEED, TaskStatus.FAILED}
    assert log.sweeps
    for body, answer in log.sweeps:
        [status] = [f["values"] for f in body["filters"] if f["key"] == "status"]
        assert sorted(status) == ["processing", "submitted"]
        assert not answer["data"].get("has_more")
        assert len(answer["data"].get("result") or []) <= 6
    assert set(counters["creates_per_external_id"].values()) == {1}
