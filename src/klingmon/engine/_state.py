"""What the engine's parts share: its seams, its budget and its counters.

The engine is split by duty (submission, monitoring, hooks and downloads) into small
classes over this one state, so that each module stays readable on its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

from klingmon._clock import to_ms

if TYPE_CHECKING:
    import asyncio
    import random
    from collections import Counter
    from collections.abc import Sequence

    from klingmon._clock import Clock
    from klingmon.api import AsyncKlingClient
    from klingmon.domain import TaskStatus
    from klingmon.engine._governor import Governor
    from klingmon.engine._settings import EngineSettings
    from klingmon.policy import DurationBook
    from klingmon.store import Change, Store, TaskRow

__all__ = ["EngineState"]


class EngineState(ABC):
    """Attributes set by :class:`~klingmon.engine.Engine`; no behaviour of its own."""

    store: Store
    client: AsyncKlingClient
    settings: EngineSettings
    clock: Clock
    owner: str
    governor: Governor
    book: DurationBook
    _rng: random.Random
    _requests: asyncio.Semaphore
    _counts: Counter[tuple[int, str]]
    _slots_free: bool
    #: The only batch whose tasks are sent this run (None: every batch's).
    _scope: int | None
    _next_watchdog: float
    _callbacks_seen: dict[str, float]
    _callbacks_read: dict[str, float]
    #: Per endpoint: when its last poll round was (clock seconds), for ``sweep_gap``.
    _polled_at: dict[str, float]
    #: Per endpoint: seconds between its last two poll rounds.
    _poll_gaps: dict[str, float]

    @abstractmethod
    def stop(self) -> None:
        """Finish the current round and return from ``run``."""

    @property
    @abstractmethod
    def stopping(self) -> bool:
        """Whether ``stop`` was called."""

    @abstractmethod
    def _learn(self, changes: Sequence[Change], before: dict[int, TaskRow]) -> None:
        """Feed the learned durations from applied status changes."""

    @abstractmethod
    def _delay(
        self,
        row: TaskRow,
        now_ms: int,
        *,
        status: TaskStatus | None = None,
        elapsed: float | None = None,
    ) -> float:
        """Seconds until the task's next poll."""

    def _lease_ms(self) -> int:
        return to_ms(self.settings.lease_seconds)
