"""The new generation in process, on a virtual clock: query parsing, the ledger,
rotated signatures, new-format callbacks and the task object's lifecycle."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import standardwebhooks
from simhelp import config
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from klingmon.sim import Faults, ResourcePack
from klingmon.sim._ledger import Ledger
from klingmon.sim._query import Sweep, next_cursor, parse_ids, parse_sweep
from klingmon.sim._webhooks import webhook_headers

if TYPE_CHECKING:
    from starlette.requests import Request

VECTOR_SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
VECTOR_SIGNATURE = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="
VECTOR_BODY = (
    b'{"id":"1234567890","status":"succeeded","message":"",'
    b'"create_time":1781080778802,"update_time":1781080794151}'
)
OLD_SECRET = "whsec_b2xkc2VjcmV0b2xkc2VjcmV0b2xkc2VjcmV0MTI="
T2V3 = "/text-to-video/kling-3.0"
DAY = 86400.0


def test_rotation_headers_carry_both_signatures():
    """Two secrets: the official vector is one of two space-separated v1 values."""
    headers = webhook_headers(
        (VECTOR_SECRET, OLD_SECRET), "9876543210", 1781080794, VECTOR_BODY
    )
    first, second = headers["webhook-signature"].split(" ")
    assert first == VECTOR_SIGNATURE
    assert second.startswith("v1,")
    assert second != first


def test_parse_ids():
    assert parse_ids({"task_ids": "1, 2,,3"}, 5) == (["1", "2", "3"], False)
    assert parse_ids({"external_task_ids": "a"}, 5) == (["a"], True)
    assert parse_ids({}, 5) == "task_ids or external_task_ids is required"
    assert (
        parse_ids({"task_ids": " "}, 5) == "task_ids or external_task_ids is required"
    )
    assert "at most 2" in str(parse_ids({"task_ids": "1,2,3"}, 2))


def test_parse_sweep_defaults_and_cursor():
    """The default window is the last 30 days; a cursor overrides the times."""
    now = 10**13
    query = parse_sweep({}, now)
    assert query == Sweep(now - 30 * 86400 * 1000, now, 100, frozenset(), frozenset())
    cursor = next_cursor(Sweep(5, 9, 10, frozenset(), frozenset()), 42)
    again = parse_sweep({"cursor": cursor, "start_time": "1", "limit": "7"}, now)
    assert again == Sweep(5, 9, 7, frozenset(), frozenset(), 42)
    assert parse_sweep({"start_time": "9", "end_time": "5"}, now) == (
        "start_time must not be after end_time"
    )
    assert "limit" in str(parse_sweep({"limit": True}, now))
    assert "filters" in str(parse_sweep({"filters": [{"key": "colour"}]}, now))


def test_ledger_charges_packs_in_order_then_cash():
    packs = (
        ResourcePack(name="a", total=3),
        ResourcePack(name="b", total=10),
        ResourcePack(name="i", package_type="image", total=1),
    )
    ledger = Ledger(packs, opened=1000.0)
    assert ledger.charge("video", 2, at=2000.0).pack == 0
    assert ledger.charge("video", 2, at=3000.0).pack == 1  # a has 1 left
    assert ledger.charge("image", 2, at=3000.0).pack is None
    assert ledger.remaining(1999.0) == [3, 10, 1]
    assert ledger.remaining(2500.0) == [1, 10, 1]
    assert ledger.remaining(3000.0) == [1, 8, 1]
    infos = ledger.costs(3000.0, None)["resource_pack_subscribe_infos"]
    assert [i["status"] for i in infos] == ["online", "online", "online"]
    ledger.charge("video", 1, at=4000.0)
    assert ledger.costs(4000.0, "a")["resource_pack_subscribe_infos"][0]["status"] == (
        "runOut"
    )


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body()))
        return Response()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.got) < count:
                await asyncio.sleep(0.005)


async def test_new_format_callbacks_follow_the_task(connect, clock):
    """Each change is POSTed as the new task object, as GET /tasks shows it then."""
    receiver = Receiver()
    sim, client = await connect(
        config(webhook_secret=VECTOR_SECRET),
        callback_transport=httpx.ASGITransport(app=receiver.app),
    )
    answer = await client.post(
        "/omni-video/kling-o1",
        json={
            "prompt": "x",
            "settings": {"duration": 8},
            "options": {"callback_url": "http://r.test/hook", "external_task_id": "o"},
        },
    )
    task_id = answer.json()["data"]["id"]
    async with sim.running():
        await receiver.wait_for(2)
    bodies = [json.loads(body) for _, body in receiver.got]
    assert [b["status"] for b in bodies] == ["processing", "succeeded"]
    assert all(b["external_id"] == "o" for b in bodies)
    assert bodies[1]["outputs"][0]["duration"] == "8.1"
    assert bodies[1]["billing"][0]["amount"] == "4.8"
    hook = standardwebhooks.Webhook(VECTOR_SECRET)  # its verify reads real time
    for headers, body in receiver.got:
        stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
        expected = hook.sign(headers["webhook-id"], stamp, body.decode())
        assert headers["webhook-signature"] == expected
    clock.advance(DAY)
    now = await client.get("/tasks", params={"task_ids": task_id})
    assert now.json()["data"][0] == bodies[1]


async def test_failed_tasks_say_why_and_cost_nothing(connect, clock):
    sim, client = await connect(config(faults=Faults(fail_rate=1.0)))
    answer = await client.post(T2V3, json={"prompt": "x"})
    task_id = answer.json()["data"]["id"]
    clock.advance(DAY)
    [task] = (await client.get("/tasks", params={"task_ids": task_id})).json()["data"]
    assert task["status"] == "failed"
    assert task["message"]
    assert task["outputs"] == []
    assert "billing" not in task
    assert sim.counters()["packs_remaining"]["Video pack 1000"] == 1000
    media = await client.get(f"/media/{task_id}/0.mp4")
    assert media.status_code == 404
