"""The JSON API, health, metrics and the optional bearer token."""

from __future__ import annotations

import pytest
from web_support import app_for, body, client, fresh_clock, tracked_store, url


@pytest.fixture
def clock():
    return fresh_clock()


@pytest.fixture
def store(tmp_path, clock):
    with tracked_store(tmp_path, clock) as s:
        yield s


async def test_batches_tasks_and_events_are_listed(store, clock):
    """Batches with counts, a batch's tasks, a task by any id and its events."""
    async with client(app_for(store, clock, confirm=False)) as http:
        await http.post(url(0), content=body(0, "processing", clock))
        batches = (await http.get("/api/batches")).json()
        batch = (await http.get("/api/batches/b")).json()
        tasks = (await http.get("/api/batches/1/tasks?limit=1&offset=1")).json()
        by_kling = (await http.get("/api/tasks/kt-0")).json()
        events = (await http.get("/api/tasks/km-0/events")).json()
    assert batches[0]["counts"] == {"processing": 1, "submitted": 1}
    assert batches[0]["priority"] == 0
    assert batch["learned_via"]["callback"] == 1
    assert [t["external_task_id"] for t in tasks] == ["km-1"]
    assert by_kling["status"] == "processing"
    assert events[-1]["source"] == "callback"


@pytest.mark.parametrize(
    "path",
    ["/api/batches/nope", "/api/tasks/nope", "/api/tasks/²", "/api/batches/9" * 30],
)
async def test_unknown_ids_are_404(store, clock, path):
    """Unknown batches and tasks (odd digits included) are 404, never 5xx."""
    async with client(app_for(store, clock)) as http:
        answer = await http.get(path)
    assert answer.status_code == 404


async def test_health_and_readiness(store, clock):
    """/healthz is up; /readyz says the store answers."""
    async with client(app_for(store, clock)) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/readyz")).json() == {"status": "ready"}


async def test_token_guards_api_and_metrics_not_callbacks(store, clock):
    """With an API token, /api and /metrics need it; callbacks use their own HMAC."""
    app = app_for(store, clock, api_token="t0k")
    async with client(app) as http:
        assert (await http.get("/api/batches")).status_code == 401
        assert (await http.get("/metrics")).status_code == 401
        ok = await http.get("/api/batches", headers={"authorization": "Bearer t0k"})
        cb = await http.post(url(0), content=body(0, "processing", clock))
    assert ok.status_code == 200
    assert cb.status_code == 200


async def test_metrics_show_callbacks_tasks_and_lag(store, clock):
    """/metrics has task gauges, callback counters and the detection-lag histogram."""
    async with client(app_for(store, clock)) as http:
        await http.post(url(0), content=body(0, "processing", clock))
        await http.post(url(1), content=b"[]")
        text = (await http.get("/metrics")).text
    assert 'klingmon_tasks{status="processing"} 1.0' in text
    assert 'klingmon_callbacks_received_total{outcome="applied"} 1.0' in text
    assert 'klingmon_callbacks_rejected_total{reason="malformed"} 1.0' in text
    assert 'klingmon_detection_lag_seconds_count{source="callback"} 1.0' in text
    assert "klingmon_queue_seconds_count 1.0" in text
    assert "klingmon_outbox_backlog" in text


async def test_openapi_lists_the_routes(store, clock):
    """The OpenAPI document names the callback, API and health routes."""
    async with client(app_for(store, clock)) as http:
        paths = (await http.get("/openapi.json")).json()["paths"]
    assert {"/callbacks/kling/{token}", "/api/tasks/{ref}/events", "/readyz"} <= set(
        paths
    )
