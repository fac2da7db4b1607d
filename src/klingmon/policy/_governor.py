"""The request budget's state machines; the async engine wraps them with a clock.

Two limits share one account: the request rate (Kling answers 429/1302 when it is too
high) and the number of tasks running at once (1303 when the pack's quota is full).
Both are learned from Kling's answers rather than configured exactly: the rate by
AIMD, the slots by shrinking to what was running when Kling said "full" and growing
back slowly as tasks finish.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import random

__all__ = ["Aimd", "SlotLimit", "backoff"]


@dataclass(slots=True)
class Aimd:
    """Request-rate limit (requests per second): additive increase, multiplicative
    decrease.

    Each success adds ``increase / rate``, so the rate grows by about ``increase``
    per second of successful traffic whatever the rate; each throttle multiplies it by
    ``decrease``.
    """

    rate: float = 10.0
    floor: float = 0.2
    ceiling: float = 50.0
    increase: float = 0.5
    decrease: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.floor <= self.ceiling:
            raise ValueError("need 0 < floor <= ceiling")
        if not 0 < self.decrease < 1 or self.increase < 0:
            raise ValueError("need 0 < decrease < 1 and increase >= 0")
        self.rate = min(self.ceiling, max(self.floor, self.rate))

    def on_success(self) -> None:
        self.rate = min(self.ceiling, self.rate + self.increase / self.rate)

    def on_throttle(self) -> None:
        """Kling said 429/1302: slow down."""
        self.rate = max(self.floor, self.rate * self.decrease)

    def interval(self) -> float:
        """Seconds between request starts."""
        return 1.0 / self.rate


@dataclass(slots=True)
class SlotLimit:
    """Submission slots sized to the account's parallel-task quota.

    Starts at the configured slots (``ceiling``); a 1303 shrinks it to what was in
    flight, and every ``grow_every`` finished tasks give one slot back.
    """

    limit: int
    ceiling: int
    grow_every: int = 3
    _finished: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.ceiling < 1 or self.grow_every < 1:
            raise ValueError("need ceiling >= 1 and grow_every >= 1")
        self.limit = min(self.ceiling, max(1, self.limit))

    @classmethod
    def of(cls, slots: int) -> SlotLimit:
        return cls(limit=slots, ceiling=slots)

    def on_concurrency_error(self, in_flight: int) -> None:
        """Kling said 1303 with ``in_flight`` of our tasks running: the quota."""
        self.limit = max(1, min(self.limit, in_flight))
        self._finished = 0

    def on_task_finished(self) -> None:
        if self.limit >= self.ceiling:
            return
        self._finished += 1
        if self._finished >= self.grow_every:
            self._finished = 0
            self.limit += 1

    def available(self, in_flight: int) -> int:
        """How many more tasks may be submitted now."""
        return max(0, self.limit - in_flight)


_MAX_EXPONENT = 62


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): full jitter, capped."""
    exponent = min(max(0, attempt), _MAX_EXPONENT)
    return rng.uniform(0.0, min(cap, base * 2.0**exponent))
