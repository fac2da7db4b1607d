"""Python hooks fed from the outbox: at least once, keyed by the event id.

A hook that raises is retried later with backoff; the event stays in the outbox until
every hook for it has run, so a crash between a hook and its acknowledgement means the
hook runs again with the same ``idempotency_key``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from klingmon.domain import TaskStatus

if TYPE_CHECKING:
    from klingmon.store import EventRow, TaskRow

__all__ = ["HookEvent", "HookName", "Hooks"]

logger = logging.getLogger(__name__)

HookName = Literal[
    "on_status", "on_succeed", "on_failed", "on_stuck", "on_timeout", "on_budget"
]
Hook = Callable[["HookEvent"], Awaitable[None] | None]


@dataclass(frozen=True, slots=True)
class HookEvent:
    """What a hook receives: the recorded event and the task as it is now."""

    event: EventRow
    task: TaskRow

    @property
    def idempotency_key(self) -> str:
        """Stable across redeliveries of the same event."""
        return f"klingmon-event-{self.event.id}"


@dataclass(slots=True)
class Hooks:
    """Registered callables by hook name; sync or async callables both work."""

    registry: dict[str, list[Hook]] = field(default_factory=dict)

    def add(self, name: HookName, hook: Hook) -> Hook:
        self.registry.setdefault(name, []).append(hook)
        return hook

    def __bool__(self) -> bool:
        return any(self.registry.values())

    def names_for(self, event: EventRow) -> list[str]:
        """Which hooks an event triggers."""
        if event.kind == "stuck":
            return ["on_stuck"]
        if event.kind == "watch_timeout":
            return ["on_timeout"]
        if event.kind == "budget":  # the batch paused: its next send would pass a cap
            return ["on_budget"]
        if event.kind not in {"status", "rejected"}:
            return []
        names = ["on_status"]
        if event.new_status == TaskStatus.SUCCEED:
            names.append("on_succeed")
        elif event.new_status in {TaskStatus.FAILED, TaskStatus.REJECTED}:
            names.append("on_failed")
        return names

    async def deliver(self, item: HookEvent) -> None:
        """Run every hook for the event; the first exception propagates."""
        for name in self.names_for(item.event):
            for hook in self.registry.get(name, []):
                result = hook(item)
                if inspect.isawaitable(result):
                    await result
