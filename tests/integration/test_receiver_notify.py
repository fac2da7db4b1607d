"""Apprise notifications over real HTTP: task failed, and batch done exactly once."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from receiver_support import fresh_clock, tracked_store
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

from klingmon._clock import to_ms
from klingmon.api import Task, snapshot
from klingmon.hooks import HookEvent
from klingmon.hooks._notify import apprise_hook
from klingmon.store import Observation
from klingmon.testing import AppServer

if TYPE_CHECKING:
    from starlette.requests import Request


async def test_apprise_notifies_failures_and_batch_done_once(tmp_path):
    """Each failed task notifies; the batch's end notifies once, not once per task."""
    seen: list[dict] = []

    async def take(request: Request) -> Response:
        seen.append(json.loads(await request.body()))
        return Response(status_code=200)

    clock = fresh_clock()
    receiver = Starlette(routes=[Route("/notify", take, methods=["POST"])])
    with tracked_store(tmp_path, clock, n=2) as store, AppServer(receiver) as server:
        observations = [
            Observation(
                store.tasks.task(f"km-{i}").id,
                snapshot(
                    Task(
                        task_id=f"kt-{i}",
                        task_status="failed",
                        task_status_msg="content moderation",
                        updated_at=to_ms(clock.now()),
                        task_info={"external_task_id": f"km-{i}"},
                    )
                ),
                "poll",
                0,
            )
            for i in range(2)
        ]
        # Both finish in one round: each event then sees the batch done.
        changes = store.watch.apply(observations, to_ms(clock.now()))
        events = {e.id: e for e in store.outbox.events()}
        host = server.url.removeprefix("http://")
        hook = apprise_hook([f"json://{host}/notify"], store)
        for change in changes:
            await hook(HookEvent(events[change.event_id], change.task))
    titles = [n["title"] for n in seen]
    assert titles.count("klingmon: task failed") == 2
    assert titles.count("klingmon: batch done") == 1
