"""Callback delivery: POST the bare task object to ``callback_url`` on each change.

Deliveries are planned when a task is created (its whole life is known then, with
the drop/duplicate/reorder/delay faults already drawn) and sent by one asyncio task
that sleeps on the injected clock until the next one is due. Kling's retry policy
is undocumented, so a delivery that fails is logged and forgotten.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from klingmon.sim._webhooks import webhook_headers

if TYPE_CHECKING:
    from collections.abc import Callable

    from klingmon._clock import Clock

__all__ = ["CallbackDispatcher", "Snapshot"]

logger = logging.getLogger(__name__)

#: ``(callback_url, task object)`` of a task as of an instant, or None if unknown.
Snapshot = tuple[str, dict[str, Any]] | None


@dataclass(order=True, slots=True)
class _Delivery:
    due: float
    seq: int
    task_id: str = field(compare=False)
    at: float = field(compare=False)
    msg_id: str = field(compare=False)
    copies: int = field(compare=False)


class CallbackDispatcher:
    """A due-time queue of deliveries and the task that sends them."""

    def __init__(
        self,
        *,
        clock: Clock,
        transport: httpx.AsyncBaseTransport | None,
        snapshot: Callable[[str, float], Snapshot],
        secret: Callable[[], tuple[str, ...]],
    ) -> None:
        self._clock = clock
        self._transport = transport
        self._snapshot = snapshot
        self._secret = secret
        self._lock = threading.Lock()
        self._queue: list[_Delivery] = []
        self._seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()
        self.stats: Counter[str] = Counter()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def schedule(
        self, task_id: str, *, at: float, due: float, msg_id: str, copies: int
    ) -> None:
        """Plan one delivery of the task as it was at ``at``, sent at ``due``."""
        with self._lock:
            self._seq += 1
            heapq.heappush(
                self._queue, _Delivery(due, self._seq, task_id, at, msg_id, copies)
            )
            self.stats["scheduled"] += 1
            loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    async def start(self) -> None:
        if self.running:
            return
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="klingmon-sim-callbacks")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        self._loop = self._wake = None

    def _pop_due(self, now: float) -> tuple[list[_Delivery], float | None]:
        with self._lock:
            due = []
            while self._queue and self._queue[0].due <= now:
                due.append(heapq.heappop(self._queue))
            return due, (self._queue[0].due if self._queue else None)

    async def _run(self) -> None:
        assert self._wake is not None  # noqa: S101 -- set by start()
        wake = self._wake
        async with httpx.AsyncClient(transport=self._transport, timeout=10.0) as client:
            try:
                while True:
                    wake.clear()
                    due, next_due = self._pop_due(self._clock.now())
                    for delivery in due:
                        sender = asyncio.create_task(self._send(client, delivery))
                        self._sending.add(sender)
                        sender.add_done_callback(self._sending.discard)
                    if due:
                        await asyncio.sleep(0)
                        continue
                    await self._wait(wake, next_due)
            finally:
                for sender in self._sending:
                    sender.cancel()
                await asyncio.gather(*self._sending, return_exceptions=True)

    async def _wait(self, wake: asyncio.Event, next_due: float | None) -> None:
        waiter = asyncio.ensure_future(wake.wait())
        if next_due is None:
            await waiter
            return
        sleeper = asyncio.ensure_future(
            self._clock.asleep(max(0.0, next_due - self._clock.now()))
        )
        _, pending = await asyncio.wait(
            {waiter, sleeper}, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _send(self, client: httpx.AsyncClient, delivery: _Delivery) -> None:
        snapshot = self._snapshot(delivery.task_id, delivery.at)
        if snapshot is None:
            return
        url, task = snapshot
        body = json.dumps(task, separators=(",", ":"), ensure_ascii=False).encode()
        status = task.get("task_status", task.get("status"))
        extra = {"task_id": delivery.task_id, "task_status": status}
        for _ in range(delivery.copies):
            headers = {"Content-Type": "application/json; charset=utf-8"}
            secrets = self._secret()
            if secrets:
                stamp = int(self._clock.now())
                headers.update(webhook_headers(secrets, delivery.msg_id, stamp, body))
            try:
                response = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                self.stats["failed"] += 1
                logger.warning(
                    "sim.callback_failed", extra={**extra, "error": type(exc).__name__}
                )
                continue
            self.stats["sent"] += 1
            logger.info(
                "sim.callback_sent", extra={**extra, "status": response.status_code}
            )
