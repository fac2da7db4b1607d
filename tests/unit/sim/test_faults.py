"""Fault injection: scripted answers, random faults and dropped connections."""

from __future__ import annotations

import json

import httpx
import pytest
from simhelp import T2V, config, create

from klingmon.sim import Faults


async def test_scripted_error_then_normal(connect):
    """script() forces the next N answers on a route, then service resumes."""
    sim, client = await connect()
    sim.script("create", status=503, code=5001, times=2)
    for _ in range(2):
        response = await client.post(T2V, json={"prompt": "x"})
        assert (response.status_code, response.json()["code"]) == (503, 5001)
        assert "data" not in response.json()
    await create(client)
    assert sim.counters()["requests"]["create 503-5001"] == 2
    assert len(sim.counters()["tasks"]) == 1


async def test_scripted_status_only_gets_a_matching_code(connect):
    """A scripted 429 without a code answers 1302 (a bare 504 answers 5002)."""
    sim, client = await connect()
    sim.script("get", status=429)
    sim.script("list", status=504)
    response = await client.get(f"{T2V}/1")
    assert (response.status_code, response.json()["code"]) == (429, 1302)
    response = await client.get(T2V)
    assert (response.status_code, response.json()["code"]) == (504, 5002)
    assert sim.counters()["answers_1302"] == 1


async def test_scripted_raw_body(connect):
    """A scripted body is sent verbatim (a non-JSON 200)."""
    sim, client = await connect()
    sim.script("any", status=200, body="<html>oops</html>")
    response = await client.get(T2V)
    assert response.status_code == 200
    assert response.text == "<html>oops</html>"
    assert sim.counters()["requests"] == {"list 200-malformed": 1}


async def test_script_wins_over_random_faults(connect):
    """A scripted answer takes precedence over the random fault rates."""
    sim, client = await connect(config(faults=Faults(rate_limit_rate=1.0)))
    sim.script("list", status=500, code=5000)
    assert (await client.get(T2V)).json()["code"] == 5000
    assert (await client.get(T2V)).json()["code"] == 1302


async def test_script_rejects_unknown_routes(connect):
    """script() only takes create, get, list, any or media."""
    sim, _ = await connect()
    with pytest.raises(ValueError, match="route"):
        sim.script("callback", status=500)


async def test_scripted_drop_stores_the_create(connect):
    """A dropped create raises RemoteProtocolError, yet the task exists."""
    sim, client = await connect()
    sim.script("create", status=200, drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(T2V, json={"prompt": "x", "external_task_id": "lost-1"})
    found = (await client.get(f"{T2V}?external_task_id=lost-1")).json()
    assert found["data"]["task_info"]["external_task_id"] == "lost-1"
    counters = sim.counters()
    assert counters["requests"]["create drop"] == 1
    assert counters["creates_per_external_id"] == {"lost-1": 1}


async def test_random_drop_create(connect):
    """drop_create_rate=1 drops every create after storing it."""
    sim, client = await connect(config(faults=Faults(drop_create_rate=1.0)))
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(T2V, json={"prompt": "x"})
    assert len(sim.counters()["tasks"]) == 1


async def test_random_rate_limit_and_5xx(connect):
    """rate_limit_rate answers 429/1302; error_5xx_rate answers 5000-5002."""
    sim, client = await connect(config(faults=Faults(rate_limit_rate=1.0)))
    response = await client.post(T2V, json={"prompt": "x"})
    assert (response.status_code, response.json()["code"]) == (429, 1302)
    sim.set_faults(Faults(error_5xx_rate=1.0))
    for _ in range(10):
        response = await client.get(T2V)
        assert (response.status_code, response.json()["code"]) in {
            (500, 5000),
            (503, 5001),
            (504, 5002),
        }
    counters = sim.counters()
    assert counters["tasks"] == {}
    assert counters["creates_per_external_id"] == {}


async def test_malformed_create_is_stored(connect):
    """malformed_rate sends a 2xx body that is not JSON; the create still happened."""
    sim, client = await connect(config(faults=Faults(malformed_rate=1.0)))
    response = await client.post(T2V, json={"prompt": "x"})
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert len(sim.counters()["tasks"]) == 1
    assert sim.counters()["requests"] == {"create 200-malformed": 1}


async def test_fault_rates_are_validated():
    """Rates outside 0..1 are refused."""
    with pytest.raises(ValueError, match="probability"):
        Faults(fail_rate=1.5)
    with pytest.raises(ValueError, match="negative"):
        Faults(latency=-1)


async def test_admin_faults_and_script(connect):
    """POST /admin/faults and /admin/script drive the same knobs over HTTP."""
    sim, client = await connect(config(admin=True))
    response = await client.post("/admin/faults", json={"rate_limit_rate": 1.0})
    assert response.status_code == 200
    assert sim.config.faults == Faults(rate_limit_rate=1.0)
    assert (await client.get(T2V)).json()["code"] == 1302
    response = await client.post(
        "/admin/script", json={"route": "list", "status": 500, "code": 5000}
    )
    assert response.status_code == 200
    assert (await client.get(T2V)).json()["code"] == 5000
    bad = await client.post("/admin/faults", json={"nope": 1})
    assert bad.status_code == 400
    bad = await client.post("/admin/script", json={"route": "x", "status": 500})
    assert bad.status_code == 400


async def test_admin_is_off_by_default(connect):
    """Without admin=True the admin routes do not exist."""
    _, client = await connect()
    assert (await client.get("/admin/counters")).status_code == 404
