"""The simulator over real uvicorn on loopback (klingmon.testing.SimServer)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import TYPE_CHECKING

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from klingmon.sim import Faults, SimConfig
from klingmon.testing import AppServer, SimServer

if TYPE_CHECKING:
    from starlette.requests import Request

T2V = "/v1/videos/text2video"
# PyJWT warns about HMAC keys under 32 bytes, an error under our filterwarnings.
SECRET = "integration-secret-key-0123456789abcdef"


def _wait_done(client: httpx.Client, task_id: str) -> dict:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        data = client.get(f"{T2V}/{task_id}").json()["data"]
        if data["task_status"] in {"succeed", "failed"}:
            return data
        time.sleep(0.05)
    raise AssertionError("the task did not finish in time")


def test_round_trip_with_jwt():
    """create, get, list and the result file over HTTP with a JWT, as curl would."""
    config = SimConfig(
        admin=True,
        seed=3,
        time_scale=1000.0,
        secret_key=SECRET,
        faults=Faults(fail_rate=0),
    )
    with SimServer(config) as server:
        now = time.time()
        token = jwt.encode(
            {"iss": config.access_key, "exp": int(now + 1800), "nbf": int(now - 5)},
            SECRET,
            algorithm="HS256",
        )
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
        }
        with httpx.Client(base_url=server.url, headers=headers, timeout=10) as client:
            body = json.dumps(
                {"prompt": "a lighthouse at dusk", "external_task_id": "rt-1"}
            )
            created = client.post(T2V, content=body)
            assert created.status_code == 200
            assert created.headers["content-type"].startswith("application/json")
            task = created.json()["data"]
            assert task["task_status"] == "submitted"
            data = _wait_done(client, task["task_id"])
            assert data["task_status"] == "succeed"
            url = data["task_result"]["videos"][0]["url"]
            assert url.startswith(server.url + "/media/")
            listed = client.get(T2V, params={"pageNum": 1, "pageSize": 10}).json()
            assert [t["task_id"] for t in listed["data"]] == [task["task_id"]]
            by_ext = client.get(T2V, params={"external_task_id": "rt-1"}).json()
            assert by_ext["data"]["task_id"] == task["task_id"]
            media = client.get(url)
            assert media.status_code == 200
            assert hashlib.sha256(media.content).hexdigest() == server.sim.media_sha256(
                url
            )
            counters = client.get("/admin/counters").json()
            assert counters["requests"]["create 200"] == 1
            assert counters["creates_per_external_id"] == {"rt-1": 1}


def test_dropped_create_over_the_wire(sim_server):
    """A scripted drop closes the connection after storing the task."""
    headers = {"Authorization": "Bearer sim-api-key"}
    with httpx.Client(base_url=sim_server.url, headers=headers, timeout=10) as client:
        response = client.post(
            "/admin/script", json={"route": "create", "status": 200, "drop": True}
        )
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(T2V, json={"prompt": "x", "external_task_id": "wire-1"})
        found = client.get(T2V, params={"external_task_id": "wire-1"})
        assert found.status_code == 200
        assert found.json()["data"]["task_info"]["external_task_id"] == "wire-1"
    counters = sim_server.sim.counters()
    assert counters["requests"]["create drop"] == 1
    assert counters["creates_per_external_id"] == {"wire-1": 1}


def test_unknown_route_over_the_wire(sim_server):
    """An unknown path gets Spring Boot's 404 JSON."""
    response = httpx.get(sim_server.url + "/v1/task/list", timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == "Not Found"


def test_callbacks_over_the_network():
    """The lifespan's dispatcher POSTs callbacks to a real receiver on loopback."""
    got: list[dict] = []

    async def hook(request: Request) -> Response:
        got.append(json.loads(await request.body()))
        return Response()

    receiver = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    config = SimConfig(seed=5, time_scale=1000.0, faults=Faults(fail_rate=0))
    with AppServer(receiver) as hooks, SimServer(config) as server:
        created = httpx.post(
            server.url + T2V,
            json={"prompt": "x", "callback_url": hooks.url + "/hook"},
            headers={"Authorization": "Bearer sim-api-key"},
            timeout=10,
        )
        assert created.status_code == 200
        deadline = time.monotonic() + 20
        while len(got) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    assert [g["task_status"] for g in got] == ["processing", "succeed"]
