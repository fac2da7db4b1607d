"""Concurrency pools: the slots a task holds from submit until it ends.

Kling counts per account x model version x pack type on both generations
(``kling-api-2026.md``), and so does the simulator: one :class:`Pools` per account,
keyed ``<model>/<video|image>`` as klingmon's engine keys them
(:func:`klingmon.policy.pool_of`). New paths take the model from the path; legacy
creates from ``model_name`` (``kling-v1`` when absent), the pack being ``image`` for
``/v1/images/*``. An image task takes ``n`` slots, any other one.

A legacy ``kling-v2-6`` and the new ``kling-2.6`` are kept apart (two names, two
pools): whether Kling shares them is UNCONFIRMED, and the engine keeps them apart too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from klingmon.api import model_of

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from klingmon.sim._tasks import SimTask

__all__ = ["Pools", "legacy_pool", "pool_label"]


def pool_label(model: str, pack: str) -> str:
    """``kling-3.0/video``: the key of one pool of an account."""
    return f"{model}/{pack}"


def legacy_pool(endpoint: str, body: Mapping[str, Any]) -> tuple[str, str]:
    """The pool of a legacy create and its pack type (``video`` or ``image``)."""
    pack = "image" if endpoint.startswith("/v1/images/") else "video"
    return pool_label(model_of(endpoint, body), pack), pack


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

    def held(self, pools: Iterable[str], tasks: dict[str, SimTask], now: float) -> int:
        """The slots held now across ``pools``."""
        return sum(self.in_flight(pool, tasks, now) for pool in pools)

    def most(self, pools: Iterable[str]) -> int:
        """The most slots ever held at once in any one of ``pools``."""
        return max((self.max[pool] for pool in pools), default=0)
