"""With callbacks: when a task whose final callback has not come is polled anyway.

A callback that Kling drops leaves a finished task looking busy; while work waits
for a slot that is a paid slot standing idle, and at the end of a batch it holds the
batch's "done". Polling every task on the polling schedule would find it, at the
price of the callbacks' whole saving. Here a poll is placed by what a dropped
callback is expected to cost:

- :class:`DropRate` learns the share of final callbacks that never come (finishes a
  poll found with no callback for them, against those a callback told), from a prior;
- :func:`unseen_hazard`: given no final callback so far, the chance that the task
  finishes unseen within a window, from its learned duration and that rate;
  :func:`steady_unseen_rate`: what a slot running such tasks yields a second;
- :func:`overdue_lag`: the same value-of-detection rule as :func:`round_lag`,
  over that rate: one request answers for a group of tasks, so the group is asked
  every ``sqrt(2 * request_cost / W)`` s while work waits (``W`` its unseen finishes
  a second, each task's as it is now), but no more often than the request budget
  (``search_budget`` a finish, and the :data:`CONFIRMATION` a signed callback
  does not spend) allows, within
  ``[min_interval, max_interval]``; ``done_lag`` once nothing waits (the
  batch's last tasks);
- :func:`overdue_delay`: a task sleeps on its callback until it is overdue (the
  chance it finished unseen reaches ``likely``), then keeps to the group's lag;
  past its p99 it polls soon, then backs off; :func:`on_rounds` puts every poll
  of a group on the group's rounds, so one request answers for all.
- :func:`on_round`: the polls of one group are brought forward onto one grid of
  rounds, ``lag`` apart, so that one request answers for all that fall due.

The result is always within ``[min_interval, safety_interval]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from klingmon.policy._durations import Distribution
    from klingmon.policy._schedule import SchedulePolicy

__all__ = [
    "CONFIRMATION",
    "DropRate",
    "mean_duration",
    "on_rounds",
    "overdue_at",
    "overdue_delay",
    "overdue_lag",
    "steady_unseen_rate",
    "unseen_finish_rate",
    "unseen_hazard",
]

#: Query requests an unsigned final callback's confirmation takes (a GET, or a
#: sweep, which looks at every other task too). A signed callback needs none: its
#: finish may spend that much more on looking for dropped callbacks, so that a
#: finish costs as much either way, and signing them never finds drops later.
CONFIRMATION = 1.0

_P_TAIL = 0.99
_TAIL_DIVISOR = 4.0
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class DropRate:
    """The share of final callbacks that never come: counts over a prior.

    ``prior`` weighs as ``weight`` finishes, so a few early misses (or a run of
    callbacks) move the rate only gradually.
    """

    came: int = 0
    missed: int = 0
    prior: float = 0.05
    weight: float = 20.0

    def __post_init__(self) -> None:
        if self.came < 0 or self.missed < 0:
            raise ValueError("counts must not be negative")
        if not 0 < self.prior < 1:
            raise ValueError("prior must be in (0, 1)")
        if self.weight <= 0:
            raise ValueError("weight must be positive")

    def seen(self, *, came: bool) -> DropRate:
        """With one more finish: told by its callback (``came``) or found by a poll."""
        if came:
            return DropRate(self.came + 1, self.missed, self.prior, self.weight)
        return DropRate(self.came, self.missed + 1, self.prior, self.weight)

    @property
    def rate(self) -> float:
        """The estimate, strictly within (0, 1)."""
        total = self.came + self.missed + self.weight
        return (self.missed + self.prior * self.weight) / total


def unseen_hazard(
    dist: Distribution, elapsed: float, window: float, drop: float
) -> float:
    """P(finishing within ``window`` s with its callback dropped | no callback yet).

    "No callback yet" is either still running (``survival``) or finished with the
    callback dropped: the second share is the task already found out of nothing.
    """
    alive = dist.survival(elapsed)
    quiet = alive + drop * (1.0 - alive)
    if quiet <= _EPSILON:
        return 0.0
    ending = max(0.0, alive - dist.survival(elapsed + window))
    return min(1.0, drop * ending / quiet)


def unseen_finish_rate(
    dist: Distribution, elapsed: float, window: float, drop: float
) -> float:
    """Expected unseen finishes per second of one task: :func:`unseen_hazard` / s."""
    return unseen_hazard(dist, elapsed, window, drop) / window


def mean_duration(dist: Distribution) -> float:
    """The mean of ``dist`` within its p99, from ten quantiles (a steady task's
    finishes come once per mean duration, whatever its age now)."""
    return sum(dist.quantile((k + 0.5) / 10) for k in range(10)) / 10


def steady_unseen_rate(dist: Distribution, drop: float) -> float:
    """Unseen finishes per second of one task slot running tasks like ``dist``."""
    return drop / max(mean_duration(dist), _EPSILON)


def overdue_lag(
    policy: SchedulePolicy,
    rate: float,
    *,
    waiting: bool,
    finishes: float = 0.0,
    signed: bool = False,
) -> float:
    """The lag bound of a group whose unseen finishes come at ``rate`` a second.

    While work waits: the value-of-detection rule, but never more rounds than the
    budget allows: ``finishes`` a second (the group's, seen or not) may cost
    ``search_budget`` requests each (and :data:`CONFIRMATION` more when their
    callbacks are ``signed``), so the rounds come at most that many times
    ``finishes`` a second. Within ``[min_interval,
    max_interval]``; ``done_lag`` (clamped alike) when nothing waits, for the
    batch's last tasks.
    """
    low, high = policy.min_interval, policy.max_interval
    if not waiting:
        return _clamp(policy.done_lag, low, high)
    if rate <= _EPSILON:
        return high
    lag = math.sqrt(2 * policy.request_cost / rate)
    if finishes > _EPSILON:
        budget = policy.search_budget + (CONFIRMATION if signed else 0.0)
        rounds = budget * finishes
        lag = max(lag, 1.0 / rounds)
    return _clamp(lag, low, high)


def overdue_at(likely: float, drop: float) -> float:
    """The share of the duration's mass after which a task with no callback is
    overdue: where the chance it has finished unseen reaches ``likely``.

    With ``x`` the mass passed, that chance is ``drop * x / (1 - x + drop * x)``.
    """
    if drop <= _EPSILON:
        return 1.0
    if likely >= drop:
        return 1.0
    return likely / (drop * (1.0 - likely) + likely)


def overdue_delay(
    policy: SchedulePolicy,
    dist: Distribution,
    elapsed: float,
    *,
    drop: float,
    lag: float,
    tail: bool,
) -> float:
    """Seconds until a task with no final callback after ``elapsed`` s is polled.

    Until the chance that it has finished unseen reaches ``likely``
    (:func:`overdue_at`; never past the p99) the task sleeps on its callback:
    while callbacks come on time, nothing is polled. Overdue, it keeps to
    ``lag``, the group's :func:`overdue_lag`, priced on the unseen finishes of
    all its tasks, so that one request a round answers for them all (no jitter:
    apart, each task would cost a round of its own). Past its p99 it has most
    likely finished unseen, or is a long one: polled soon, then backing off with
    the time overdue, never further apart than the lag; with ``tail`` false (the
    batch waits on its last tasks, the lag is ``done_lag``) at the lag. Within
    ``[min_interval, safety_interval]``.
    """
    low, high = policy.min_interval, policy.safety_interval
    lag = _clamp(lag, low, high)
    elapsed = max(0.0, elapsed)
    p99 = dist.quantile(_P_TAIL)
    if elapsed > p99:
        if not tail:
            return lag
        return _clamp((elapsed - p99) / _TAIL_DIVISOR, low, lag)
    due = min(p99, dist.quantile(overdue_at(policy.likely, drop)))
    if elapsed < due:
        return _clamp(due - elapsed, low, high)
    return lag


def on_rounds(at: float, *, next_round: float, step: float) -> float:
    """``at`` moved onto the group's rounds: ``next_round``, then every ``step``.

    A task due before the next round waits for it (the group's lag allows that
    much); one due later joins the first round after it. One request then
    answers for every task of the round.
    """
    if at <= next_round or step <= _EPSILON:
        return next_round
    return next_round + math.ceil((at - next_round) / step - _EPSILON) * step


def _clamp(value: float, low: float, high: float) -> float:
    return max(low, min(high, value))
