"""Callbacks: the bare task POSTed on each change, signed, with delivery faults."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import TYPE_CHECKING

import httpx
from simhelp import config, create
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from klingmon.sim import Faults, Simulator, sign_webhook

if TYPE_CHECKING:
    from starlette.requests import Request

SECRET = "whsec_" + base64.b64encode(b"callback-test-secret-0123456789").decode()
HOOK = "http://receiver.test/hook"


class Receiver:
    """A webhook receiver app that records what it gets."""

    def __init__(self, clock, status: int = 200) -> None:
        self.clock = clock
        self.status = status
        self.got: list[tuple[dict[str, str], bytes, float]] = []
        self.app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])

    async def _hook(self, request: Request) -> Response:
        self.got.append((dict(request.headers), await request.body(), self.clock.now()))
        return Response(status_code=self.status)

    def transport(self) -> httpx.AsyncBaseTransport:
        return httpx.ASGITransport(app=self.app)

    def statuses(self) -> list[str]:
        return [json.loads(body)["task_status"] for _, body, _ in self.got]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.got) < count:
                await asyncio.sleep(0.005)


async def _start(connect, clock, **overrides):
    receiver = Receiver(clock)
    sim, client = await connect(
        config(**overrides), callback_transport=receiver.transport()
    )
    return sim, client, receiver


async def test_callback_on_each_change(connect, clock):
    """processing and succeed are each POSTed as the bare task object."""
    sim, client, receiver = await _start(connect, clock)
    task = await create(client, callback_url=HOOK, external_task_id="cb-1")
    await receiver.wait_for(2)
    assert receiver.statuses() == ["processing", "succeed"]
    for headers, body, _ in receiver.got:
        assert headers["content-type"] == "application/json; charset=utf-8"
        assert "webhook-signature" not in headers
        data = json.loads(body)
        assert "code" not in data
        assert data["task_id"] == task["task_id"]
        assert data["task_info"]["external_task_id"] == "cb-1"
    final = json.loads(receiver.got[1][1])
    assert final["task_result"]["videos"][0]["url"].endswith("/0.mp4")
    transitions = sim.counters()["tasks"][task["task_id"]]["transitions"]
    assert [json.loads(b)["updated_at"] for _, b, _ in receiver.got] == [
        t[1] for t in transitions[1:]
    ]
    assert sim.counters()["callbacks"] == {"scheduled": 2, "sent": 2}


async def test_signed_callbacks_verify(connect, clock):
    """With a webhook_secret, every delivery has a valid Standard Webhooks signature."""
    _, client, receiver = await _start(connect, clock, webhook_secret=SECRET)
    await create(client, callback_url=HOOK)
    await receiver.wait_for(2)
    ids = set()
    for headers, body, received_at in receiver.got:
        stamp = int(headers["webhook-timestamp"])
        assert abs(stamp - received_at) < 2
        expected = sign_webhook(SECRET, headers["webhook-id"], stamp, body)
        assert headers["webhook-signature"] == expected
        ids.add(headers["webhook-id"])
    assert len(ids) == 2


async def test_no_callback_url_no_callbacks(connect, clock):
    """Tasks without callback_url schedule nothing."""
    sim, client, receiver = await _start(connect, clock)
    await create(client)
    assert sim.counters()["callbacks"] == {}
    assert receiver.got == []


async def test_dropped_callbacks(connect, clock):
    """callback_drop_rate=1 delivers nothing and counts the drops."""
    sim, client, receiver = await _start(
        connect, clock, faults=Faults(fail_rate=0.0, callback_drop_rate=1.0)
    )
    await create(client, callback_url=HOOK)
    await asyncio.sleep(0.05)
    assert receiver.got == []
    assert sim.counters()["callbacks"] == {"dropped": 2}


async def test_duplicate_callbacks_share_the_id(connect, clock):
    """callback_duplicate_rate=1 sends each change twice with the same webhook-id."""
    _, client, receiver = await _start(
        connect,
        clock,
        webhook_secret=SECRET,
        faults=Faults(fail_rate=0.0, callback_duplicate_rate=1.0),
    )
    await create(client, callback_url=HOOK)
    await receiver.wait_for(4)
    assert receiver.statuses() == ["processing", "processing", "succeed", "succeed"]
    ids = [headers["webhook-id"] for headers, _, _ in receiver.got]
    assert ids[0] == ids[1] != ids[2] == ids[3]


async def test_reordered_callbacks(connect, clock):
    """callback_reorder_rate=1 delivers the final status before processing."""
    _, client, receiver = await _start(
        connect, clock, faults=Faults(fail_rate=0.0, callback_reorder_rate=1.0)
    )
    await create(client, callback_url=HOOK)
    await receiver.wait_for(2)
    assert receiver.statuses() == ["succeed", "processing"]


async def test_delayed_callbacks(connect, clock):
    """callback_delay (Kling seconds / time_scale) postpones every delivery."""
    _, client, receiver = await _start(
        connect,
        clock,
        time_scale=2.0,
        faults=Faults(fail_rate=0.0, callback_delay=600.0),
    )
    await create(client, callback_url=HOOK)
    await receiver.wait_for(2)
    for _, body, received_at in receiver.got:
        changed = json.loads(body)["updated_at"] / 1000
        assert received_at - changed >= 300 - 0.01


async def test_failed_task_callback(connect, clock):
    """A failed task's final callback says failed with its reason."""
    _, client, receiver = await _start(connect, clock, faults=Faults(fail_rate=1.0))
    await create(client, callback_url=HOOK)
    await receiver.wait_for(2)
    final = json.loads(receiver.got[-1][1])
    assert final["task_status"] == "failed"
    assert final["task_status_msg"]
    assert final["final_unit_deduction"] == "0"


async def test_unreachable_receiver_is_logged_and_dropped(connect, clock, caplog):
    """A delivery that cannot connect is counted as failed; the simulator goes on."""

    # MockTransport: the simulator cannot make a receiver that refuses connections
    # in-process; this stands in for one.
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    sim, client = await connect(
        config(), callback_transport=httpx.MockTransport(refuse)
    )
    await create(client, callback_url=HOOK)
    async with asyncio.timeout(5):
        while sim.counters()["callbacks"].get("failed", 0) < 2:
            await asyncio.sleep(0.005)
    assert "sim.callback_failed" in caplog.messages
    await create(client)


async def test_receiver_errors_are_not_retried(connect, clock):
    """A receiver answering 500 gets each change once (no retry policy is known)."""
    receiver = Receiver(clock, status=500)
    sim, client = await connect(config(), callback_transport=receiver.transport())
    await create(client, callback_url=HOOK)
    await receiver.wait_for(2)
    await asyncio.sleep(0.02)
    assert len(receiver.got) == 2
    assert sim.counters()["callbacks"]["sent"] == 2


async def test_running_context_starts_and_stops_the_dispatcher(clock):
    """Simulator.running() owns the dispatcher (the ASGI lifespan uses it)."""
    sim = Simulator(config(), clock=clock)
    async with sim.running():
        assert sim.callbacks.running
    assert not sim.callbacks.running
    await sim.aclose()
