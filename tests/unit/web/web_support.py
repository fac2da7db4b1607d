"""Builders for the web tests: a store with tracked tasks and an ASGI client."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import httpx

from klingmon._clock import to_ms
from klingmon.api import Task
from klingmon.api import snapshot as to_snapshot
from klingmon.store import NewTask, Store
from klingmon.testing import VirtualClock
from klingmon.web import ReceiverSettings, callback_token, create_app

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI

SECRET = b"k" * 32
WHSEC = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
ENDPOINT = "/v1/videos/text2video"


def tracked_store(path: Path, clock: VirtualClock, n: int = 2) -> Store:
    """A store holding ``n`` submitted tasks ``kt-<i>`` / ``km-<i>``."""
    store = Store.open(str(path / "web.db"))
    created = to_ms(clock.now()) - 5000
    tasks = [
        NewTask(
            endpoint=ENDPOINT,
            body={"prompt": "p"},
            external_task_id=f"km-{i}",
            task=to_snapshot(
                Task(
                    task_id=f"kt-{i}",
                    task_status="submitted",
                    created_at=created,
                    updated_at=created,
                    task_info={"external_task_id": f"km-{i}"},
                )
            ),
        )
        for i in range(n)
    ]
    store.tasks.create_batch("b", tasks, to_ms(clock.now()))
    return store


def body(i: int, status: str, clock: VirtualClock, **extra: Any) -> bytes:
    """A legacy callback body for task ``i``."""
    now = to_ms(clock.now())
    task: dict[str, Any] = {
        "task_id": f"kt-{i}",
        "task_status": status,
        "task_status_msg": "",
        "created_at": now - 5000,
        "updated_at": now - 100,
        "task_info": {"external_task_id": f"km-{i}"},
        "task_result": {"videos": []},
    }
    if status == "succeed":
        task["task_result"] = {
            "videos": [{"id": "v", "url": "https://x/v.mp4", "duration": "5"}]
        }
    task.update(extra)
    return json.dumps(task).encode()


def url(i: int, secret: bytes = SECRET) -> str:
    return "/callbacks/kling/" + callback_token(secret, f"km-{i}")


def app_for(
    store: Store,
    clock: VirtualClock,
    *,
    webhook_secret: str | None = None,
    confirm: bool = True,
    woken: list[tuple[str, bool]] | None = None,
    api_token: str | None = None,
) -> FastAPI:
    if woken is not None:
        store.flow.listen_here(
            lambda notice: woken.extend((e, notice.finish) for e in notice.endpoints)
        )
    return create_app(
        store,
        secret=SECRET,
        settings=ReceiverSettings(webhook_secret=webhook_secret, confirm=confirm),
        clock=clock,
        api_token=api_token,
    )


def client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://localhost:8000"
    )


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything a forged callback must leave untouched."""
    return (
        [(t.status, t.next_poll_ms, t.kling_updated_ms) for t in store.tasks.tasks()],
        len(store.outbox.events()),
        store.outbox.outbox_backlog(),
    )


def fresh_clock() -> VirtualClock:
    return VirtualClock()
