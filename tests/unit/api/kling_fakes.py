"""Sans-I/O helpers for the client tests: a virtual clock, canned answers, a driver."""

from __future__ import annotations

import json
from typing import Any

import httpx

from klingmon.api._ops import Send


class FakeClock:
    """Virtual time: sleeping advances it instantly."""

    def __init__(self, start: float = 1_750_000_000.0) -> None:
        self.t = start
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.t += max(0.0, seconds)

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance(self, seconds: float) -> None:
        self.t += seconds


def envelope(data: Any = None, *, code: int = 0, message: str = "SUCCEED") -> dict:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": "rid-1"}
    if data is not None:
        body["data"] = data
    return body


def task(task_id: str = "866889456698785798", status: str = "submitted", **extra):
    return {
        "task_id": task_id,
        "task_status": status,
        "task_info": extra.pop("task_info", {}),
        "created_at": 1774805076166,
        "updated_at": 1774805076166,
        **extra,
    }


def answer(
    status: int = 200, body: Any = None, *, text: str | None = None, headers=None
):
    """A response factory: called with the request the operation sent."""

    def make(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers, request=request)
        return httpx.Response(
            status, content=json.dumps(body).encode(), headers=headers, request=request
        )

    return make


def drive(operation, answers: list, clock: FakeClock, sent: list | None = None):
    """Run an operation generator against scripted answers; return (value, sent)."""
    sent = [] if sent is None else sent
    outcome = None
    try:
        while True:
            action = operation.send(outcome)
            if isinstance(action, Send):
                sent.append(action.request)
                assert answers, (
                    f"unexpected request {action.request.method} {action.request.url}"
                )
                item = answers.pop(0)
                if isinstance(item, BaseException):
                    outcome = item
                else:
                    outcome = item(action.request)
            else:
                clock.sleep(action.seconds)
                outcome = None
    except StopIteration as stop:
        return stop.value, sent
