"""In-process transports, sync and async, and the real bodies' shapes (§6)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from simhelp import API_KEY, T2V, config

from klingmon.sim import Faults, Simulator

# Key sets of the real bodies quoted in reference §6 (S11 create, S15 succeed,
# S14 failed); ours may carry the 2026 fields on top, never fewer.
REAL_CREATE = {"task_id", "task_status", "task_info", "created_at", "updated_at"}
REAL_SUCCEED = {
    "task_id",
    "task_status",
    "task_status_msg",
    "task_result",
    "created_at",
    "updated_at",
}
REAL_FAILED = {
    "task_id",
    "task_info",
    "created_at",
    "updated_at",
    "task_result",
    "task_status",
    "task_status_msg",
}


def _client(sim: Simulator) -> httpx.Client:
    return httpx.Client(
        transport=sim.sync_transport(),
        base_url="http://sim.test",
        headers={"Authorization": f"Bearer {API_KEY}"},
    )


@pytest.mark.parametrize(
    ("fail_rate", "real"), [(0.0, REAL_SUCCEED), (1.0, REAL_FAILED)]
)
def test_sync_transport_round_trip_and_real_shapes(clock, fail_rate, real):
    """The sync transport serves the sync client; bodies have the real keys."""
    sim = Simulator(config(faults=Faults(fail_rate=fail_rate)), clock=clock)
    with _client(sim) as client:
        created = client.post(T2V, json={"prompt": "x"}).json()
        assert set(created) == {"code", "message", "request_id", "data"}
        assert set(created["data"]) == REAL_CREATE
        clock.advance(36_000)
        task_id = created["data"]["task_id"]
        data = client.get(f"{T2V}/{task_id}").json()["data"]
        assert real <= set(data)
        assert set(data) - real <= {
            "task_info",
            "watermark_info",
            "final_unit_deduction",
        }
        listed = client.get(T2V).json()["data"]
        assert set(listed[0]) == set(data)


def test_sync_transport_drop_and_close(clock):
    """A drop raises RemoteProtocolError; closing the client stops the thread."""
    sim = Simulator(config(), clock=clock)
    before = threading.active_count()
    client = _client(sim)
    sim.script("create", status=200, drop=True)
    with pytest.raises(httpx.RemoteProtocolError):
        client.post(T2V, json={"prompt": "x"})
    assert len(sim.counters()["tasks"]) == 1
    client.close()
    assert threading.active_count() == before
    transport = sim.sync_transport()
    transport.close()
    transport.close()
    with pytest.raises(RuntimeError, match="closed"):
        transport.handle_request(httpx.Request("GET", "http://sim.test" + T2V))


async def test_latency_is_added(connect):
    """Faults.latency delays each answer by real seconds."""
    sim, client = await connect(config(faults=Faults(fail_rate=0, latency=0.05)))
    start = time.monotonic()
    await client.get(T2V)
    assert time.monotonic() - start >= 0.05
    assert sim.counters()["requests"] == {"list 200": 1}
