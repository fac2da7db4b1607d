"""Auth per generation and the generation-neutral client methods.

The auth flows are driven without sockets. The client tests use
``httpx.MockTransport`` because the simulator does not speak the new generation
yet (it is being extended concurrently); the merger should switch them to the
simulator once it answers ``/text-to-video/...`` and ``/tasks``.
"""

from __future__ import annotations

import json

import httpx
import pytest
from kling_fakes import envelope

from klingmon.api import (
    ApiKeyAuth,
    AsyncKlingClient,
    GenerationAuth,
    JwtAuth,
    KlingClient,
    TaskQuery,
    build_request,
    check_auth,
)
from klingmon.domain import TaskStatus
from klingmon.errors import ConfigError, RequestValidationError, TaskNotFoundError

NEW = "/text-to-video/kling-3.0"
ENV = ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_KEY", "KLING_API_BASE")


@pytest.fixture
def env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- auth ---------------------------------------------------------------------------


def test_preflight_names_kling_api_key_for_a_pair_only():
    """Only an access/secret pair and a new path: a clear error naming the key."""
    with pytest.raises(ConfigError, match="KLING_API_KEY") as info:
        check_auth(NEW, has_api_key=False, has_key_pair=True)
    assert "KLING_ACCESS_KEY" in str(info.value)
    check_auth(NEW, has_api_key=True, has_key_pair=False)
    check_auth("text2video", has_api_key=False, has_key_pair=True)
    check_auth("/tasks", has_api_key=True, has_key_pair=True)


def test_client_check_endpoint_before_anything_is_sent(clock):
    """A pair-only client refuses a new path at once; nothing is sent."""
    with KlingClient(access_key="ak", secret_key="sk", clock=clock) as client:
        client.check_endpoint("text2video")
        with pytest.raises(ConfigError, match="KLING_API_KEY"):
            client.check_endpoint(NEW)
        with pytest.raises(ConfigError, match="KLING_API_KEY"):
            client.submit(build_request(NEW, {"prompt": "p"}))
        with pytest.raises(ConfigError, match="KLING_API_KEY"):
            client.fetch(NEW, ["1"])
        assert sum(client.requests_sent.values()) == 0


def _flow_header(auth: httpx.Auth, url: str) -> str:
    flow = auth.sync_auth_flow(httpx.Request("GET", url))
    return next(flow).headers["Authorization"]


def test_generation_auth_signs_each_generation_its_way(clock):
    """Legacy paths carry the JWT, new ones the API key."""
    jwt = JwtAuth("ak", "sk", clock)
    auth = GenerationAuth(jwt, ApiKeyAuth("key-1"))
    assert _flow_header(auth, "https://k/v1/videos/text2video/1").startswith(
        "Bearer eyJ"
    )
    assert _flow_header(auth, "https://k/tasks?task_ids=1") == "Bearer key-1"
    assert _flow_header(auth, "https://k/text-to-video/kling-3.0") == "Bearer key-1"


def test_generation_auth_without_key_refuses_new_paths(clock):
    """A new-generation request without an API key is never sent."""
    auth = GenerationAuth(JwtAuth("ak", "sk", clock), None)
    with pytest.raises(ConfigError, match="KLING_API_KEY"):
        _flow_header(auth, "https://k/tasks?task_ids=1")
    assert "***" in repr(auth)
    assert "sk" not in repr(auth).replace("***", "")


def test_from_env_takes_pair_and_key_together(env):
    """With all three set, legacy uses the JWT and the new generation the key."""
    env.setenv("KLING_ACCESS_KEY", "ak")
    env.setenv("KLING_SECRET_KEY", "sk")
    env.setenv("KLING_API_KEY", "key-1")
    with KlingClient.from_env() as client:
        assert isinstance(client.auth, JwtAuth)
        assert isinstance(client.api_key_auth, ApiKeyAuth)
        client.check_endpoint(NEW)


# -- the client on a MockTransport (the simulator cannot answer these yet) ----------


def _new_task(task_id: str, status: str = "processing", **extra) -> dict:
    return {"id": task_id, "status": status, "message": "", **extra}


class FakeKling:
    """A minimal new-generation Kling (MockTransport: not in the simulator yet)."""

    def __init__(self) -> None:
        self.tasks: dict[str, dict] = {}
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        assert request.headers["Authorization"] == "Bearer key-1"
        if request.method == "GET" and request.url.path == "/tasks":
            if "external_task_ids" in request.url.params:
                wanted = request.url.params["external_task_ids"].split(",")
                data = [t for t in self.tasks.values() if t["external_id"] in wanted]
                return httpx.Response(200, json=envelope(data))
            ids = request.url.params["task_ids"].split(",")
            data = [self.tasks[i] for i in ids if i in self.tasks]
            return httpx.Response(200, json=envelope(data))
        if request.method == "POST" and request.url.path == "/tasks":
            body = json.loads(request.content)
            wanted = body["filters"][0]["values"]
            found = [t for t in self.tasks.values() if t["status"] in wanted]
            return httpx.Response(
                200, json=envelope({"result": found, "has_more": False})
            )
        body = json.loads(request.content)
        task_id = str(len(self.tasks) + 100)
        ext = body["options"]["external_task_id"]
        self.tasks[task_id] = _new_task(task_id, "submitted", external_id=ext)
        return httpx.Response(200, json=envelope(_new_task(task_id, "submitted")))


def test_submit_fetch_and_query_give_snapshots(clock):
    """submit, fetch and query_tasks speak Snapshots and pages for the new API."""
    kling = FakeKling()
    with KlingClient(
        api_key="key-1",
        base_url="https://k",
        transport=httpx.MockTransport(kling),
        clock=clock,
        tasks_batch_size=2,
    ) as client:
        snap = client.submit(build_request(NEW, {"prompt": "p"}), external_task_id="e1")
        assert (snap.task_id, snap.status) == ("100", TaskStatus.SUBMITTED)
        kling.tasks["100"]["status"] = "succeeded"
        kling.tasks["100"]["outputs"] = [{"type": "video", "url": "https://v/1.mp4"}]
        found = client.fetch(NEW, ["100", "404", "405"])
        assert list(found) == ["100"]
        assert found["100"].urls == ["https://v/1.mp4"]
        page = client.query_tasks(TaskQuery(statuses=("succeeded",)))
        assert [t.id for t in page.result] == ["100"]
        with pytest.raises(TaskNotFoundError):
            client.fetch_one(NEW, "404")
        assert client.requests_sent == {"create": 1, "get": 3, "list": 1}


def test_legacy_methods_point_to_the_neutral_ones(clock):
    """create()/get() return legacy wire tasks; on a new path they say what to use."""
    with KlingClient(api_key="key-1", clock=clock) as client:
        with pytest.raises(RequestValidationError, match="submit"):
            client.create(build_request(NEW, {"prompt": "p"}))
        with pytest.raises(RequestValidationError, match="fetch"):
            client.get(NEW, "1")
        assert sum(client.requests_sent.values()) == 0


async def test_async_client_fetches_too(clock):
    """The async client runs the same operations."""
    kling = FakeKling()
    kling.tasks["7"] = _new_task("7", "failed", message="moderation")
    async with AsyncKlingClient(
        api_key="key-1",
        base_url="https://k",
        transport=httpx.MockTransport(kling),
        clock=clock,
    ) as client:
        found = await client.fetch(NEW, ["7"])
        assert found["7"].status is TaskStatus.FAILED
        assert found["7"].message == "moderation"


def test_fetch_external_and_wait_snapshot(clock):
    """Lookup by external ids keys Snapshots by them; wait_snapshot ends on success."""
    kling = FakeKling()
    kling.tasks["5"] = _new_task("5", "succeeded", external_id="km-5")
    with KlingClient(
        api_key="key-1",
        base_url="https://k",
        transport=httpx.MockTransport(kling),
        clock=clock,
    ) as client:
        found = client.fetch_external(NEW, ["km-5", "km-unknown"])
        assert list(found) == ["km-5"]
        assert found["km-5"].task_id == "5"
        assert client.wait_snapshot(NEW, "5").status is TaskStatus.SUCCEED
        assert client.fetch_one(NEW, external_task_id="km-5").task_id == "5"
