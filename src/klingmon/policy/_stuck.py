"""Whether a task has been in one state too long, or its caller's deadline has passed.

Stuck is relative: k times the learned p99 of the phase, never below a fixed floor
(the seed flagged anything past 600 s; real processing tails run past 30 min). A stuck
task is flagged and reported, never dropped: it may still finish.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from klingmon.policy._durations import Phase

if TYPE_CHECKING:
    from klingmon.policy._durations import Distribution

__all__ = ["StuckPolicy", "is_stuck", "stuck_after", "timed_out"]


@dataclass(frozen=True, slots=True, kw_only=True)
class StuckPolicy:
    """Stuck after ``max(floor, factor * p99)`` seconds in a phase."""

    factor: float = 3.0
    floor_submitted: float = 600.0
    floor_processing: float = 1800.0

    def __post_init__(self) -> None:
        if self.factor <= 0 or self.floor_submitted < 0 or self.floor_processing < 0:
            raise ValueError("factor must be positive and floors non-negative")

    def floor(self, phase: Phase) -> float:
        if phase is Phase.SUBMITTED:
            return self.floor_submitted
        return self.floor_processing


def stuck_after(policy: StuckPolicy, dist: Distribution, phase: Phase) -> float:
    """Seconds in ``phase`` after which a task counts as stuck."""
    return max(policy.floor(phase), policy.factor * dist.quantile(0.99))


def is_stuck(
    policy: StuckPolicy, dist: Distribution, phase: Phase, elapsed: float
) -> bool:
    """Whether ``elapsed`` seconds in ``phase`` is beyond :func:`stuck_after`."""
    return elapsed > stuck_after(policy, dist, phase)


def timed_out(deadline_ms: int | None, now_ms: int) -> bool:
    """Whether a caller's deadline (epoch ms, ``None`` for none) has passed."""
    return deadline_ms is not None and now_ms >= deadline_ms
