"""A finish a signed callback applied frees its slot and teaches durations, once.

The receiver (a real app under uvicorn on loopback) applies Standard-Webhooks-signed
callbacks itself, without the engine: the engine must still hear of every terminal
change, whether the receiver shares its store object or runs on a store of its own
(another process of the fleet).
"""

from __future__ import annotations

import json

import httpx
import pytest
from engine_support import virtual_monitor

from klingmon.api import Text2VideoRequest
from klingmon.policy import Phase
from klingmon.sim import SimConfig, Simulator, sign_webhook
from klingmon.store import Store
from klingmon.testing import AppServer, VirtualClock
from klingmon.web import ReceiverSettings, callback_token, create_app

WHSEC = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
SECRET = b"signed-finish-test-secret-0123456789abcdef"


def _body(row, status: str, updated_ms: int) -> bytes:
    task = {
        "task_id": row.task_id,
        "task_status": status,
        "task_status_msg": "",
        "created_at": row.kling_created_ms,
        "updated_at": updated_ms,
        "task_info": {"external_task_id": row.external_task_id},
    }
    if status == "succeed":
        task["task_result"] = {
            "videos": [{"id": f"v-{row.id}", "url": "https://cdn.test/v.mp4"}]
        }
    return json.dumps(task).encode()


async def _post(http, row, status: str, updated_ms: int, now: float) -> int:
    raw = _body(row, status, updated_ms)
    msg_id = f"msg-{row.id}-{status}"
    stamp = int(now)
    answer = await http.post(
        "/callbacks/kling/" + callback_token(SECRET, row.external_task_id),
        content=raw,
        headers={
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_webhook(WHSEC, msg_id, stamp, raw),
        },
    )
    return answer.status_code


@pytest.mark.parametrize("receiver_store", ["shared", "own"])
async def test_signed_finishes_grow_a_shrunken_slot_limit_and_teach(
    tmp_path, receiver_store
):
    clock = VirtualClock()
    sim = Simulator(SimConfig(admin=True, seed=3), clock=clock)
    monitor = virtual_monitor(sim, tmp_path / "k.db", clock, slots=3)
    engine = monitor.engine()
    monitor.submit(
        [Text2VideoRequest(prompt=f"signed clip {i}") for i in range(3)],
        batch="signed",
    )
    await engine.step()  # the three creates
    rows = monitor.store.tasks.tasks()
    assert all(row.task_id for row in rows)
    engine.governor.on_concurrency_error(1)  # a 1303: the limit shrinks to one
    assert engine.governor.slots.limit == 1
    key = rows[0].key
    learned = {p: engine.book.get(key, p).count for p in Phase}

    store = (
        monitor.store
        if receiver_store == "shared"
        else Store.open(str(tmp_path / "k.db"))
    )
    app = create_app(
        store,
        secret=SECRET,
        settings=ReceiverSettings(webhook_secret=WHSEC),
        clock=clock,
    )
    with AppServer(app) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            for row in rows:
                started = row.kling_created_ms + 10_000
                assert await _post(http, row, "processing", started, clock.now()) == 200
            await engine.step()  # a round between: the engine reads them running
            for row in rows:
                done = row.kling_created_ms + 70_000
                assert await _post(http, row, "succeed", done, clock.now()) == 200
    assert {row.status.value for row in monitor.store.tasks.tasks()} == {"succeed"}

    await engine.step()
    # Three finishes give one slot back (the governor grows one per three).
    assert engine.governor.slots.limit == 2
    after = {p: engine.book.get(key, p).count for p in Phase}
    assert after[Phase.SUBMITTED] > learned[Phase.SUBMITTED]
    assert after[Phase.PROCESSING] > learned[Phase.PROCESSING]

    # Exactly once: later rounds do not count the same finishes again.
    await engine.step()
    await engine.step()
    assert engine.governor.slots.limit == 2
    assert {p: engine.book.get(key, p).count for p in Phase} == after
    if store is not monitor.store:
        store.close()
    await monitor.aclose()
