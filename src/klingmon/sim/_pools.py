"""Concurrency pools: the slots a task holds from submit until it ends.

The legacy side keeps its single account-wide pool (key ``legacy``); the new
generation counts per model version x pack type (key ``kling-3.0/video``), an
image task taking ``n`` slots.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from klingmon.sim._tasks import SimTask

__all__ = ["LEGACY_POOL", "Pools"]

LEGACY_POOL = "legacy"


class Pools:
    """Active task ids per pool, the most slots ever held, and refusals (1303)."""

    def __init__(self) -> None:
        self._active: defaultdict[str, set[str]] = defaultdict(set)
        self.max: Counter[str] = Counter()
        self.refused: Counter[str] = Counter()

    def in_flight(self, pool: str, tasks: dict[str, SimTask], now: float) -> int:
        active = {t for t in self._active[pool] if tasks[t].in_flight(now)}
        self._active[pool] = active
        return sum(tasks[t].slots for t in active)

    def admit(
        self, pool: str, need: int, size: int, tasks: dict[str, SimTask], now: float
    ) -> int | None:
        """The slots held after admitting ``need`` more, or None (a 1303)."""
        held = self.in_flight(pool, tasks, now) + need
        if held > size:
            self.refused[pool] += 1
            return None
        return held

    def add(self, pool: str, task_id: str, held: int) -> None:
        self._active[pool].add(task_id)
        self.max[pool] = max(self.max[pool], held)

    def snapshot(self, tasks: dict[str, SimTask], now: float) -> dict[str, int]:
        return {pool: self.in_flight(pool, tasks, now) for pool in sorted(self._active)}
