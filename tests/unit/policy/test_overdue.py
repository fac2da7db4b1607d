"""With callbacks, a task whose final callback is overdue is polled by what a dropped
one costs (``klingmon.policy._overdue``)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_strategies import distributions, schedule_policies

from klingmon.policy import (
    CONFIRMATION,
    Distribution,
    DropRate,
    Phase,
    SchedulePolicy,
    mean_duration,
    on_rounds,
    overdue_at,
    overdue_delay,
    overdue_lag,
    steady_unseen_rate,
    unseen_finish_rate,
    unseen_hazard,
)

FAST = settings(max_examples=200, deadline=None)
drops = st.floats(min_value=0.0, max_value=1.0)
elapsed_s = st.floats(min_value=0.0, max_value=50_000.0)
rates = st.floats(min_value=0.0, max_value=1000.0)
STD = Distribution.prior(Phase.PROCESSING, "std", "5")


@FAST
@given(came=st.integers(0, 10_000), missed=st.integers(0, 10_000))
def test_drop_rate_within_zero_and_one(came, missed):
    """The learned rate is a share, never 0 or 1 (the prior keeps a doubt)."""
    rate = DropRate(came, missed).rate
    assert 0 < rate < 1


@FAST
@given(came=st.integers(0, 1000), missed=st.integers(0, 1000))
def test_drop_rate_moves_with_what_it_sees(came, missed):
    """A missed callback raises the rate, one that came lowers it."""
    now = DropRate(came, missed)
    assert now.seen(came=False).rate > now.rate > now.seen(came=True).rate


def test_drop_rate_starts_at_the_prior_and_learns():
    """No finish seen: the prior; many: close to what was seen."""
    assert DropRate().rate == pytest.approx(0.05)
    assert DropRate(came=900, missed=100).rate == pytest.approx(0.1, abs=0.005)
    with pytest.raises(ValueError, match="prior"):
        DropRate(prior=0.0)


@FAST
@given(dist=distributions(), elapsed=elapsed_s, drop=drops)
def test_unseen_hazard_is_a_probability_scaled_by_the_drop_rate(dist, elapsed, drop):
    """In [0, drop]: only a dropped callback leaves a finish unseen; 0 when none is."""
    h = unseen_hazard(dist, elapsed, 10.0, drop)
    assert 0.0 <= h <= drop + 1e-12
    assert unseen_hazard(dist, elapsed, 10.0, 0.0) == 0.0


@FAST
@given(dist=distributions(), drop=drops)
def test_steady_rate_is_drop_over_the_mean(dist, drop):
    mean = mean_duration(dist)
    assert dist.quantile(0.05) <= mean <= dist.quantile(0.95)
    assert steady_unseen_rate(dist, drop) == pytest.approx(drop / mean)


@FAST
@given(
    policy=schedule_policies(),
    rate=rates,
    finishes=rates,
    waiting=st.booleans(),
)
def test_overdue_lag_in_bounds_and_within_the_budget(policy, rate, finishes, waiting):
    """Within [min, max]; while work waits the rounds stay within the budget (at
    most ``search_budget * finishes`` a second) unless ``min`` forbids a lag that
    long; done_lag, clamped, when nothing waits."""
    lag = overdue_lag(policy, rate, waiting=waiting, finishes=finishes)
    assert policy.min_interval <= lag <= policy.max_interval
    if not waiting:
        assert lag == max(
            policy.min_interval, min(policy.max_interval, policy.done_lag)
        )
    elif finishes > 1e-9 and lag < policy.max_interval:
        rounds = policy.search_budget * finishes
        assert lag * rounds >= 1 - 1e-9


@FAST
@given(policy=schedule_policies(), rate=rates, finishes=rates)
def test_signed_callbacks_search_with_the_request_they_do_not_confirm_with(
    policy, rate, finishes
):
    """A signed callback needs no confirming request: its group's rounds may come
    as often as ``search_budget + CONFIRMATION`` a finish, never further apart
    than an unsigned group's."""
    unsigned = overdue_lag(policy, rate, waiting=True, finishes=finishes)
    signed = overdue_lag(policy, rate, waiting=True, finishes=finishes, signed=True)
    assert policy.min_interval <= signed <= unsigned
    if finishes > 1e-9 and signed < policy.max_interval:
        rounds = (policy.search_budget + CONFIRMATION) * finishes
        assert signed * rounds >= 1 - 1e-9


@FAST
@given(policy=schedule_policies(), low=rates, high=rates)
def test_overdue_lag_tightens_as_unseen_finishes_grow(policy, low, high):
    """More unseen finishes a second: polls no further apart (the value rule)."""
    low, high = sorted((low, high))
    a = overdue_lag(policy, low, waiting=True)
    b = overdue_lag(policy, high, waiting=True)
    assert b <= a


def test_overdue_lag_is_the_square_root_rule():
    policy = SchedulePolicy()
    assert overdue_lag(policy, 0.02, waiting=True) == pytest.approx(math.sqrt(100))
    # A budget of 0.4 rounds a finish at 0.05 finishes a second: 50 s apart at least.
    assert overdue_lag(policy, 0.02, waiting=True, finishes=0.05) == pytest.approx(50.0)
    # Signed: 1.4 rounds a finish, 14.3 s apart; the square-root rule's 10 s binds
    # only once the budget allows it.
    signed = overdue_lag(policy, 0.02, waiting=True, finishes=0.05, signed=True)
    assert signed == pytest.approx(1 / (1.4 * 0.05))


@FAST
@given(
    policy=schedule_policies(),
    dist=distributions(),
    elapsed=elapsed_s,
    drop=drops,
    lag=st.floats(min_value=0.01, max_value=5000.0),
    tail=st.booleans(),
)
def test_overdue_delay_in_bounds(*, policy, dist, elapsed, drop, lag, tail):
    """Always within [min_interval, safety_interval]."""
    delay = overdue_delay(policy, dist, elapsed, drop=drop, lag=lag, tail=tail)
    assert policy.min_interval <= delay <= policy.safety_interval


def _due(policy: SchedulePolicy, dist: Distribution, drop: float) -> float:
    return min(dist.quantile(0.99), dist.quantile(overdue_at(policy.likely, drop)))


@FAST
@given(
    policy=schedule_policies(),
    dist=distributions(),
    elapsed=elapsed_s,
    drop=st.floats(min_value=0.001, max_value=1.0),
    lag=st.floats(min_value=0.01, max_value=600.0),
    tail=st.booleans(),
)
def test_an_overdue_task_keeps_to_the_group_lag(
    *, policy, dist, elapsed, drop, lag, tail
):
    """Once overdue, no task waits longer than the group's lag (clamped): the
    group's next round answers for it."""
    if elapsed < _due(policy, dist, drop):
        return
    delay = overdue_delay(policy, dist, elapsed, drop=drop, lag=lag, tail=tail)
    assert delay <= max(policy.min_interval, min(policy.safety_interval, lag)) + 1e-9


@FAST
@given(
    policy=schedule_policies(),
    dist=distributions(),
    elapsed=elapsed_s,
    drop=drops,
    lag=st.floats(min_value=0.01, max_value=600.0),
    tail=st.booleans(),
)
def test_nothing_is_polled_while_a_callback_is_on_time(
    *, policy, dist, elapsed, drop, lag, tail
):
    """Before it is overdue a task sleeps on its callback: its poll comes no
    sooner than where it becomes overdue (``min_interval`` aside)."""
    due = _due(policy, dist, drop)
    if elapsed >= due:
        return
    delay = overdue_delay(policy, dist, elapsed, drop=drop, lag=lag, tail=tail)
    assert elapsed + delay >= min(due, elapsed + policy.min_interval) - 1e-6


@FAST
@given(
    likely=st.floats(min_value=0.001, max_value=0.5),
    drop=st.floats(min_value=0.0, max_value=1.0),
)
def test_overdue_where_the_unseen_chance_reaches_likely(likely, drop):
    """At the share returned, a finished-unseen task is ``likely`` given silence."""
    x = overdue_at(likely, drop)
    assert 0 < x <= 1
    if x < 1:
        unseen = drop * x / (1 - x + drop * x)
        assert unseen == pytest.approx(likely, rel=1e-6)
    assert overdue_at(likely, min(1.0, drop * 2)) <= x


@FAST
@given(
    at=st.floats(0, 1e6),
    next_round=st.floats(0, 1e6),
    step=st.floats(0.01, 1000.0),
)
def test_polls_fall_on_the_group_rounds(at, next_round, step):
    """The next round, or the first round after ``at``: never more than a step
    off what was planned, never before the next round."""
    moved = on_rounds(at, next_round=next_round, step=step)
    assert moved >= next_round
    k = (moved - next_round) / step
    assert abs(k - round(k)) < 1e-6 * max(1.0, k)
    if at > next_round:
        assert at - 1e-6 <= moved < at + step + 1e-6


def test_tasks_due_apart_share_one_round():
    assert on_rounds(104.0, next_round=110.0, step=10.0) == 110.0
    assert on_rounds(113.0, next_round=110.0, step=10.0) == 120.0


def test_rare_drops_sleep_to_the_p99_as_the_safety_net_did():
    """No drop possible: sleep on the callback until it is overdue."""
    policy = SchedulePolicy()
    delay = overdue_delay(policy, STD, 0.0, drop=0.0, lag=10.0, tail=True)
    assert delay == pytest.approx(STD.quantile(0.99))


def test_a_group_with_more_unseen_finishes_polls_sooner():
    """The higher the drop rate, or the more tasks in their mass, the sooner the
    group's round: the lag follows the unseen finishes a second."""
    policy = SchedulePolicy()

    def lag(drop: float, ages: list[float]) -> float:
        rate = sum(unseen_finish_rate(STD, a, policy.target_lag, drop) for a in ages)
        return overdue_lag(policy, rate, waiting=True)

    median = STD.quantile(0.5)
    assert lag(0.5, [median]) < lag(0.05, [median]) < lag(0.001, [median])
    assert lag(0.05, [median] * 5) < lag(0.05, [median])
    # A task long before its mass adds next to nothing.
    assert lag(0.05, [median, 0.0]) == pytest.approx(lag(0.05, [median]), rel=0.05)


def test_overdue_past_the_p99_polls_soon_then_backs_off():
    policy = SchedulePolicy()
    p99 = STD.quantile(0.99)

    def at(elapsed: float, *, tail: bool = True) -> float:
        return overdue_delay(policy, STD, elapsed, drop=0.05, lag=60.0, tail=tail)

    assert at(p99 + 1) == policy.min_interval
    assert at(p99 + 100) == pytest.approx(25.0)
    assert at(p99 + 10_000) == 60.0
    # The batch waits on it (nothing queued): at the lag (there ``done_lag``).
    assert at(p99 + 10_000, tail=False) == 60.0


@FAST
@given(
    policy=schedule_policies(),
    dist=distributions(),
    start=st.floats(0, 20_000),
    drop=drops,
    lag=st.floats(min_value=0.01, max_value=600.0),
)
def test_never_exceeds_the_request_budget(*, policy, dist, start, drop, lag):
    """A task never costs more than 3600 / min_interval polls in any hour."""
    if 3600 / policy.min_interval > 5000:  # keep the walk short
        return
    elapsed, polls = start, 0
    while True:
        elapsed += overdue_delay(policy, dist, elapsed, drop=drop, lag=lag, tail=True)
        if elapsed > start + 3600:
            break
        polls += 1
    assert polls <= 3600 / policy.min_interval
