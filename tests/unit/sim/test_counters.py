"""Counters: what a test of a client checks the client's behaviour by."""

from __future__ import annotations

from simhelp import T2V, config, create

import klingmon.sim
from klingmon.sim import Faults


async def test_counters_by_route_and_outcome(connect, clock):
    """Requests are counted by route and outcome, tasks with their transitions."""
    sim, client = await connect(config(admin=True, slots=1))
    task = await create(client, external_task_id="c-1")
    await client.post(T2V, json={"prompt": "x", "external_task_id": "c-2"})
    await client.get(f"{T2V}/{task['task_id']}")
    await client.get(T2V)
    clock.advance(36_000)
    await client.get(f"/media/{task['task_id']}/0.mp4")
    counters = (await client.get("/admin/counters")).json()
    assert counters["requests"] == {
        "create 200": 1,
        "create 429-1303": 1,
        "get 200": 1,
        "list 200": 1,
        "media 200": 1,
    }
    assert counters["requests_by_route"] == {
        "create": 2,
        "get": 1,
        "list": 1,
        "media": 1,
    }
    assert counters["creates_per_external_id"] == {"c-1": 1, "c-2": 1}
    assert counters["answers_1303"] == 1
    assert counters["answers_1302"] == 0
    assert (counters["max_in_flight"], counters["in_flight"]) == (1, 0)
    entry = counters["tasks"][task["task_id"]]
    assert entry["external_task_id"] == "c-1"
    assert entry["endpoint"] == T2V
    assert entry["status"] == "succeed"
    assert [s for s, _ in entry["transitions"]] == [
        "submitted",
        "processing",
        "succeed",
    ]
    assert entry["urls"] == [f"http://sim.test/media/{task['task_id']}/0.mp4"]
    assert sim.counters()["requests"]["admin 200"] == 1


async def test_public_url_is_the_base_of_result_urls(connect, clock):
    """config.public_url replaces the request's base URL in result URLs."""
    sim, client = await connect(config(public_url="https://cdn.example/"))
    task = await create(client)
    clock.advance(36_000)
    urls = sim.counters()["tasks"][task["task_id"]]["urls"]
    assert urls == [f"https://cdn.example/media/{task['task_id']}/0.mp4"]


async def test_fail_rate_is_roughly_honoured(connect, clock):
    """Over many tasks the failed share is near fail_rate."""
    sim, client = await connect(config(slots=500, faults=Faults(fail_rate=0.3)))
    for _ in range(200):
        await create(client)
    clock.advance(10 * 36_000)
    statuses = [t["status"] for t in sim.counters()["tasks"].values()]
    assert 0.2 < statuses.count("failed") / len(statuses) < 0.4


def test_exports_are_sorted_and_complete():
    """klingmon.sim exports a sorted __all__ of names that exist."""
    names = klingmon.sim.__all__
    assert names == sorted(names)
    for name in names:
        assert hasattr(klingmon.sim, name)
    public = {n for n in dir(klingmon.sim) if not n.startswith("_")}
    assert public - {"annotations"} <= set(names)
