"""When to poll a task next: where its remaining chance of finishing is.

The naive loop polls every task every 10 s whatever it is; that wastes requests while a
task cannot be done yet and still detects finishes late on a long tail. Here the next
poll is placed from the learned :class:`~klingmon.policy.Distribution` of the task's
current phase:

- while a finish within the next ``target_lag`` seconds is likely, poll every
  ``target_lag`` (the detection-lag bound);
- while it is not (the mass has not started, or a broad tail), sleep until the point
  where the chance of having finished reaches ``likely``, so each sleep skips at most
  that much probability, capped at ``max_interval``;
- past the p99, back off with the time already spent (``elapsed / 4``), capped;
- while callbacks flow, sleep ``safety_interval`` but wake when the callback becomes
  overdue (the p99), then poll soon and back off again.

The lag bound itself follows what a finish found sooner is worth (:func:`round_lag`).
While work waits for a slot, every second a finish goes unseen is a paid slot standing
idle; one request answers for a whole group of tasks (a list page, a ``GET /tasks``
batch), so a round is worth its price once the idle time it is expected to end
reaches ``request_cost`` slot-seconds: for a group finishing ``W`` tasks a second,
every ``sqrt(2 * request_cost / W)`` seconds (the square-root rule of inspection
scheduling). When nothing waits, a finish only delays the batch's "done": the lag is
``done_lag``, and the batch's last tasks are polled that often even past the p99.

Every delay is at least ``min_interval`` so one task can never cost more than
``3600 / min_interval`` polls an hour, whatever the distribution says.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from klingmon.policy._durations import (
        Distribution,
        DurationBook,
        DurationKey,
        Phase,
    )

__all__ = [
    "INTERVAL_RULE",
    "Schedule",
    "SchedulePolicy",
    "finish_hazard",
    "finish_rate",
    "intervals_ordered",
    "next_poll_delay",
    "polls_per_hour",
    "round_lag",
]

_TAIL_DIVISOR = 4.0
#: The one order the three poll intervals must keep, in the words errors use.
INTERVAL_RULE = "need 0 < min_interval <= target_lag <= max_interval"
_P_TAIL = 0.99
_EPSILON = 1e-9


def intervals_ordered(
    min_interval: float, target_lag: float, max_interval: float
) -> bool:
    """Whether the intervals keep :data:`INTERVAL_RULE` (checked here only)."""
    return 0 < min_interval <= target_lag <= max_interval


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulePolicy:
    """The knobs of the poll schedule, in seconds unless said otherwise."""

    #: While a finish is likely, polls are at most this far apart.
    target_lag: float = 10.0
    #: Never poll one task more often than this.
    min_interval: float = 2.0
    #: Never leave one task unpolled longer than this (without callbacks).
    max_interval: float = 120.0
    #: ± this fraction of random spread, so that tasks submitted together drift apart.
    jitter: float = 0.1
    #: While callbacks are flowing for the endpoint, polls fall back to this.
    safety_interval: float = 300.0
    #: "A finish is likely": P(finish within ``target_lag`` | still running) >= this.
    likely: float = 0.02
    #: An endpoint is polled at most this often (and never less often than
    #: ``min_interval`` allows): callback hints that arrive together are confirmed
    #: by one sweep instead of one each.
    sweep_gap: float = 0.5
    #: What one query request is worth, in slot-seconds: the price a round must
    #: save while work waits for a slot (lower: tighter polls, more requests).
    request_cost: float = 1.0
    #: When nothing waits for a slot: the lag bound for the batch's remaining
    #: tasks, past the p99 too (their last finish is the batch's "done"); kept
    #: within ``[min_interval, max_interval]``.
    done_lag: float = 8.0
    #: While callbacks flow: the query requests a finish may cost in the rounds
    #: that look for dropped callbacks (:func:`~klingmon.policy.overdue_lag`),
    #: beside an unsigned callback's confirming request. A signed callback needs
    #: no confirmation, and its search gets that request too
    #: (:data:`~klingmon.policy.CONFIRMATION`): a finish costs as much either way.
    search_budget: float = 0.4

    def __post_init__(self) -> None:
        if not intervals_ordered(self.min_interval, self.target_lag, self.max_interval):
            raise ValueError(INTERVAL_RULE)
        if self.safety_interval < self.min_interval:
            raise ValueError("safety_interval must be at least min_interval")
        if not 0 <= self.jitter < 1:
            raise ValueError("jitter must be in [0, 1)")
        if not 0 < self.likely < 1:
            raise ValueError("likely must be in (0, 1)")
        if self.sweep_gap < 0:
            raise ValueError("sweep_gap must not be negative")
        if self.request_cost <= 0:
            raise ValueError("request_cost must be positive")
        if self.done_lag <= 0:
            raise ValueError("done_lag must be positive")
        if self.search_budget <= 0:
            raise ValueError("search_budget must be positive")

    @property
    def endpoint_gap(self) -> float:
        """The least time between two polls of one endpoint."""
        return min(self.sweep_gap, self.min_interval)


def finish_hazard(dist: Distribution, elapsed: float, window: float) -> float:
    """P(leaving the phase within ``window`` s | still in it after ``elapsed`` s)."""
    alive = dist.survival(elapsed)
    if alive <= _EPSILON:
        return 1.0
    return max(0.0, min(1.0, (alive - dist.survival(elapsed + window)) / alive))


def finish_rate(dist: Distribution, elapsed: float, window: float) -> float:
    """Expected finishes per second of one task now: its hazard over ``window``."""
    return finish_hazard(dist, elapsed, window) / window


def round_lag(policy: SchedulePolicy, rate: float, *, waiting: bool) -> float:
    """The lag bound of a group of tasks one request answers for.

    ``rate``: the group's expected finishes per second (the sum of
    :func:`finish_rate`); ``waiting``: whether work waits for a slot. Within
    ``[min_interval, target_lag]`` while work waits, ``done_lag`` otherwise.
    """
    if not waiting:
        return _clamp(policy.done_lag, policy.min_interval, policy.max_interval)
    if rate <= _EPSILON:
        return policy.target_lag
    lag = math.sqrt(2 * policy.request_cost / rate)
    return _clamp(lag, policy.min_interval, policy.target_lag)


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))


def _tail_delay(policy: SchedulePolicy, since: float) -> float:
    return _clamp(since / _TAIL_DIVISOR, policy.min_interval, policy.max_interval)


def _base_delay(
    policy: SchedulePolicy, dist: Distribution, elapsed: float, lag: float, tail: bool
) -> float:
    """The unjittered delay; at most ``lag`` whenever a finish is likely."""
    alive = dist.survival(elapsed)
    # Past the p99 (or at the very top, through rounding): back off, unless the
    # batch waits on this task (``tail`` false), then keep to the lag.
    if elapsed > dist.quantile(_P_TAIL) or alive <= _EPSILON:
        return _tail_delay(policy, elapsed) if tail else lag
    if finish_hazard(dist, elapsed, lag) >= policy.likely:
        return lag
    if not tail and elapsed >= dist.quantile(0.5):
        # Past the median the batch's last tasks keep to the lag: a sleep through
        # a thin stretch of the tail would hold the batch's "done" as long.
        return lag
    # Sleep until a share ``likely`` of the remaining mass has had its chance to finish.
    until = dist.quantile(1.0 - alive * (1.0 - policy.likely))
    return _clamp(until - elapsed, lag, policy.max_interval)


def next_poll_delay(
    policy: SchedulePolicy,
    dist: Distribution,
    elapsed: float,
    *,
    callbacks: bool = False,
    rng: random.Random,
    lag: float | None = None,
    tail: bool = True,
) -> float:
    """Seconds until the next poll of a task that has spent ``elapsed`` s in its phase.

    ``lag`` is the lag bound (``target_lag`` unless given, as :func:`round_lag`
    gives it); ``tail`` false keeps a task past its median to it too, the p99
    included (the batch's last tasks). The result is always within
    ``[min_interval, max_interval]``, or within
    ``[min_interval, safety_interval]`` when ``callbacks`` is true; it is at most
    ``lag`` whenever a finish in the next ``lag`` seconds is likely and ``elapsed``
    is within the p99.
    """
    lag = (
        policy.target_lag
        if lag is None
        else _clamp(lag, policy.min_interval, policy.max_interval)
    )
    elapsed = max(0.0, elapsed)
    spread = policy.jitter * (2 * rng.random() - 1)
    if callbacks:
        p99 = dist.quantile(_P_TAIL)
        if elapsed < p99:
            # Sleep on the callback, but wake to check when it becomes overdue.
            base = min(policy.safety_interval, p99 - elapsed)
            delay = base * (1 - abs(spread))
            return _clamp(delay, policy.min_interval, policy.safety_interval)
        # Overdue: poll soon, then back off with the time overdue.
        delay = _tail_delay(policy, elapsed - p99) * (1 + spread)
        high = min(policy.max_interval, policy.safety_interval)
        return _clamp(delay, policy.min_interval, high)
    base = _base_delay(policy, dist, elapsed, lag, tail)
    # Inside the lag bound jitter only shortens, so the bound holds exactly.
    factor = 1 - abs(spread) if base <= lag else 1 + spread
    return _clamp(base * factor, policy.min_interval, policy.max_interval)


def polls_per_hour(
    policy: SchedulePolicy,
    dist: Distribution,
    *,
    start: float = 0.0,
    callbacks: bool = False,
    seed: int = 0,
) -> int:
    """How many polls one never-finishing task costs in the hour after ``start``.

    For budgets and tests: it walks the schedule as the engine would.
    """
    rng = random.Random(seed)
    elapsed, polls = start, 0
    while True:
        elapsed += next_poll_delay(policy, dist, elapsed, callbacks=callbacks, rng=rng)
        if elapsed > start + 3600:
            return polls
        polls += 1


@dataclass(slots=True)
class Schedule:
    """A :class:`SchedulePolicy` bound to a :class:`DurationBook` and a seeded RNG."""

    policy: SchedulePolicy
    book: DurationBook
    rng: random.Random = field(default_factory=random.Random)

    def next_poll(
        self,
        key: DurationKey,
        phase: Phase,
        elapsed: float,
        *,
        callbacks: bool = False,
    ) -> float:
        """Seconds until the next poll of a task of ``key`` in ``phase``."""
        dist = self.book.get(key, phase)
        return next_poll_delay(
            self.policy, dist, elapsed, callbacks=callbacks, rng=self.rng
        )
