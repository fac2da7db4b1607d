"""The lag bound follows what a finish found sooner is worth (``round_lag``)."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from policy_strategies import distributions, schedule_policies

from klingmon.policy import (
    Distribution,
    Phase,
    SchedulePolicy,
    finish_hazard,
    finish_rate,
    next_poll_delay,
    round_lag,
)

FAST = settings(max_examples=200, deadline=None)
rates = st.floats(min_value=0.0, max_value=1000.0)
seeds = st.integers(min_value=0, max_value=2**32)
STD = Distribution.prior(Phase.PROCESSING, "std", "5")


@FAST
@given(policy=schedule_policies(), rate=rates, waiting=st.booleans())
def test_round_lag_in_bounds(policy, rate, waiting):
    """While work waits: within [min_interval, target_lag]; else done_lag, clamped."""
    lag = round_lag(policy, rate, waiting=waiting)
    if waiting:
        assert policy.min_interval <= lag <= policy.target_lag
    else:
        low, high = policy.min_interval, policy.max_interval
        assert lag == max(low, min(high, policy.done_lag))


@FAST
@given(policy=schedule_policies(), a=rates, b=rates)
def test_more_finishes_never_loosen_the_lag(policy, a, b):
    """A group finishing faster is worth polling at least as often."""
    low, high = sorted((a, b))
    assert round_lag(policy, high, waiting=True) <= round_lag(policy, low, waiting=True)


@FAST
@given(rate=st.floats(min_value=0.01, max_value=10.0))
def test_a_round_is_worth_its_price(rate):
    """Unclamped, the idle slot-seconds a round ends (W T^2 / 2) equal its price."""
    policy = SchedulePolicy(min_interval=0.01, target_lag=120.0, max_interval=600.0)
    lag = round_lag(policy, rate, waiting=True)
    if policy.min_interval < lag < policy.target_lag:
        assert math.isclose(rate * lag * lag / 2, policy.request_cost, rel_tol=1e-9)


def test_dearer_requests_poll_less_often():
    cheap = SchedulePolicy(request_cost=0.5)
    dear = SchedulePolicy(request_cost=5.0)
    assert round_lag(cheap, 0.4, waiting=True) < round_lag(dear, 0.4, waiting=True)


def test_fifty_tasks_are_polled_tighter_than_five():
    """The same price buys a tighter lag when one request answers for more finishes."""
    policy = SchedulePolicy()
    one = finish_rate(STD, 90.0, policy.target_lag)
    assert round_lag(policy, 50 * one, waiting=True) < round_lag(
        policy, 5 * one, waiting=True
    )


@FAST
@given(
    policy=schedule_policies(),
    dist=distributions(),
    elapsed=st.floats(min_value=0.0, max_value=50_000.0),
    lag=st.floats(min_value=0.01, max_value=600.0),
    seed=seeds,
)
def test_the_given_lag_bounds_likely_finishes(policy, dist, elapsed, lag, seed):
    """While a finish within the lag is likely (and within the p99): delay <= lag."""
    bound = max(policy.min_interval, min(policy.max_interval, lag))
    delay = next_poll_delay(policy, dist, elapsed, rng=random.Random(seed), lag=lag)
    assert policy.min_interval <= delay <= policy.max_interval
    if finish_hazard(dist, elapsed, bound) >= policy.likely and elapsed <= (
        dist.quantile(0.99)
    ):
        assert delay <= bound


@FAST
@given(policy=schedule_policies(), dist=distributions(), seed=seeds)
def test_the_batch_last_tasks_keep_the_lag_past_the_tail(policy, dist, seed):
    """Past the p99 a task backs off, unless the batch waits on it (tail=False)."""
    elapsed = dist.quantile(0.99) * 3 + 1
    bound = max(policy.min_interval, min(policy.max_interval, policy.done_lag))
    delay = next_poll_delay(
        policy, dist, elapsed, rng=random.Random(seed), lag=bound, tail=False
    )
    assert delay <= bound


def test_backoff_past_the_tail_while_work_waits():
    policy = SchedulePolicy()
    elapsed = STD.quantile(0.99) * 8
    rng = random.Random(1)
    waiting = next_poll_delay(policy, STD, elapsed, rng=rng, lag=2.0)
    done = next_poll_delay(policy, STD, elapsed, rng=rng, lag=2.0, tail=False)
    assert waiting > 10 * done
