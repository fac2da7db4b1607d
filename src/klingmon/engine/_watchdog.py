"""The watchdog: flags tasks far past their learned duration, or past a deadline.

A flag is an event (hooks hear ``on_stuck`` / ``on_timeout``); the task stays
watched either way. Never dropping a task is the point: a timeout only slows its
polls.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from klingmon._clock import to_ms
from klingmon.engine._shared import phase_of, phase_start
from klingmon.policy import is_stuck, timed_out

if TYPE_CHECKING:
    from klingmon.engine._offload import Offload
    from klingmon.engine._settings import EngineSettings
    from klingmon.policy import DurationBook
    from klingmon.store import Store, TaskRow

__all__ = ["Watchdog"]

logger = logging.getLogger(__name__)


class Watchdog:
    """Every ``watchdog_interval``: one look at every active task."""

    def __init__(
        self,
        store: Store,
        *,
        settings: EngineSettings,
        book: DurationBook,
        offload: Offload,
    ) -> None:
        self._store = store
        self._settings = settings
        self._book = book
        self._off = offload
        #: When the next look is due (clock seconds).
        self.next_at = 0.0

    async def round(self, now: float) -> bool:
        """Flag what is newly stuck or timed out; True when anything was."""
        if now < self.next_at:
            return False
        self.next_at = now + self._settings.watchdog_interval
        now_ms = to_ms(now)
        did = False
        for row in await self._off(self._store.watch.active):
            did = await self._stuck(row, now_ms) or did
            if not row.watch_timeout and timed_out(row.deadline_ms, now_ms):
                await self._off(
                    self._store.watch.flag,
                    row.id,
                    "watch_timeout",
                    now_ms,
                    {"deadline_ms": row.deadline_ms},
                )
                logger.warning("task.watch_timeout", extra={"task": row.id})
                did = True
        return did

    async def _stuck(self, row: TaskRow, now_ms: int) -> bool:
        if row.stuck:
            return False
        phase = phase_of(row.status)
        start = phase_start(row)
        elapsed = (now_ms - start) / 1000 if start else 0.0
        dist = self._book.get(row.key, phase)
        if not is_stuck(self._settings.stuck, dist, phase, elapsed):
            return False
        await self._off(
            self._store.watch.flag,
            row.id,
            "stuck",
            now_ms,
            {"phase": phase.value, "elapsed": elapsed},
        )
        logger.warning("task.stuck", extra={"task": row.id})
        return True
