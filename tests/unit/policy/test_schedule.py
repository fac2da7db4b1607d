"""The poll schedule: always in bounds, lag-bounded while a finish is likely."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_strategies import distributions, schedule_policies

from klingmon.policy import (
    Distribution,
    DurationBook,
    Phase,
    Schedule,
    SchedulePolicy,
    finish_hazard,
    next_poll_delay,
    polls_per_hour,
)

FAST = settings(max_examples=200, deadline=None)
elapsed_s = st.one_of(
    st.floats(min_value=0.0, max_value=50_000.0),
    st.floats(min_value=-2.0, max_value=4.5).map(lambda x: 10.0**x),
)
seeds = st.integers(min_value=0, max_value=2**32)
STD = Distribution.prior(Phase.PROCESSING, "std", "5")


@FAST
@given(
    policy=schedule_policies(),
    dist=distributions(),
    elapsed=elapsed_s,
    seed=seeds,
    callbacks=st.booleans(),
)
def test_delay_always_in_bounds(policy, dist, elapsed, seed, callbacks):
    """The delay is within [min, max] (or [min, safety] with callbacks), any input."""
    delay = next_poll_delay(
        policy, dist, elapsed, callbacks=callbacks, rng=random.Random(seed)
    )
    high = policy.safety_interval if callbacks else policy.max_interval
    assert policy.min_interval <= delay <= high


@FAST
@given(policy=schedule_policies(), dist=distributions(), elapsed=elapsed_s, seed=seeds)
def test_lag_bound(policy, dist, elapsed, seed):
    """While a finish is likely (and elapsed <= p99), delay <= target_lag."""
    delay = next_poll_delay(policy, dist, elapsed, rng=random.Random(seed))
    likely = finish_hazard(dist, elapsed, policy.target_lag) >= policy.likely
    if likely and elapsed <= dist.quantile(0.99):
        assert delay <= policy.target_lag


@FAST
@given(
    policy=schedule_policies(),
    dist=distributions(),
    q=st.floats(min_value=0.0, max_value=0.99),
    seed=seeds,
)
def test_lag_bound_inside_the_mass(policy, dist, q, seed):
    """The lag bound, sampled where the mass is (elapsed at a quantile <= p99)."""
    elapsed = dist.quantile(q)
    delay = next_poll_delay(policy, dist, elapsed, rng=random.Random(seed))
    if finish_hazard(dist, elapsed, policy.target_lag) >= policy.likely:
        assert delay <= policy.target_lag


@FAST
@given(policy=schedule_policies(), dist=distributions(), q=st.floats(0.0, 0.98))
def test_a_sleep_skips_little_probability(policy, dist, q):
    """Without jitter, a sleep beyond target_lag skips at most `likely` of the mass."""
    policy = SchedulePolicy(
        min_interval=policy.min_interval,
        target_lag=policy.target_lag,
        max_interval=policy.max_interval,
        jitter=0.0,
        likely=policy.likely,
    )
    elapsed = dist.quantile(q)
    delay = next_poll_delay(policy, dist, elapsed, rng=random.Random(0))
    if delay > policy.target_lag:
        assert finish_hazard(dist, elapsed, delay) <= policy.likely + 1e-6


@settings(max_examples=50, deadline=None)
@given(
    policy=schedule_policies(),
    dist=distributions(),
    start=st.floats(0, 20_000),
    callbacks=st.booleans(),
    seed=seeds,
)
def test_never_exceeds_the_request_budget(policy, dist, start, callbacks, seed):
    """A task never costs more than 3600 / min_interval polls in any hour."""
    if 3600 / policy.min_interval > 5000:  # keep the walk short
        return
    polls = polls_per_hour(policy, dist, start=start, callbacks=callbacks, seed=seed)
    assert polls <= 3600 / policy.min_interval


def test_cold_start_sleeps_until_the_mass():
    """A fresh std task is first polled near where its 30-120 s mass starts."""
    policy = SchedulePolicy(jitter=0.0)
    first = next_poll_delay(policy, STD, 0.0, rng=random.Random(0))
    assert 10 < first < STD.quantile(0.1)
    assert STD.cdf(first) == pytest.approx(policy.likely, rel=0.01)


def test_polls_at_target_lag_inside_the_mass():
    """At the median a finish is likely: poll every target_lag (jitter shortens)."""
    policy = SchedulePolicy()
    delays = [
        next_poll_delay(policy, STD, STD.quantile(0.5), rng=random.Random(i))
        for i in range(50)
    ]
    assert all(9.0 - 1e-9 <= d <= 10.0 for d in delays)


def test_backs_off_past_the_tail():
    """Past the p99 the delay grows as elapsed / 4, capped at max_interval."""
    policy = SchedulePolicy(jitter=0.0)
    p99 = STD.quantile(0.99)
    near = next_poll_delay(policy, STD, p99 * 1.1, rng=random.Random(0))
    far = next_poll_delay(policy, STD, p99 * 1.5, rng=random.Random(0))
    assert near == pytest.approx(p99 * 1.1 / 4)
    assert far > near
    assert next_poll_delay(policy, STD, 10_000, rng=random.Random(0)) == 120.0


def test_callbacks_mean_slow_polls_until_overdue():
    """With callbacks: sleep until the p99 (at most safety); overdue: poll soon."""
    policy = SchedulePolicy(jitter=0.0)
    p99 = STD.quantile(0.99)
    assert next_poll_delay(
        policy, STD, 0, callbacks=True, rng=random.Random(0)
    ) == pytest.approx(p99)
    slow = Distribution.prior(Phase.PROCESSING, "pro", "10")
    assert (
        next_poll_delay(policy, slow, 0, callbacks=True, rng=random.Random(0)) == 300.0
    )
    overdue = next_poll_delay(
        policy, STD, p99 + 1, callbacks=True, rng=random.Random(0)
    )
    assert policy.min_interval <= overdue <= policy.target_lag


def test_fewer_polls_than_a_fixed_interval():
    """For a task that ends at the median, the schedule beats a fixed 10-s loop."""
    policy = SchedulePolicy()
    finish = STD.quantile(0.5)
    rng = random.Random(1)
    elapsed, polls = 0.0, 0
    while elapsed < finish:
        elapsed += next_poll_delay(policy, STD, elapsed, rng=rng)
        polls += 1
    assert elapsed - finish <= policy.target_lag
    assert polls < finish / 10


def test_schedule_binds_policy_and_book():
    """Schedule.next_poll reads the book's distribution for the key and phase."""
    book = DurationBook()
    key = ("/v1/videos/text2video", "", "std", "5")
    schedule = Schedule(SchedulePolicy(jitter=0.0), book, random.Random(0))
    cold = schedule.next_poll(key, Phase.PROCESSING, 0.0)
    for _ in range(100):
        book.observe(key, Phase.PROCESSING, 600.0)
    warm = schedule.next_poll(key, Phase.PROCESSING, 0.0)
    assert warm > cold


@pytest.mark.parametrize(
    "kwargs",
    [
        {"min_interval": 0},
        {"min_interval": 20, "target_lag": 10},
        {"target_lag": 200},
        {"safety_interval": 1},
        {"jitter": 1.0},
        {"likely": 0},
    ],
)
def test_policy_rejects_inconsistent_knobs(kwargs):
    """A policy whose bounds contradict each other fails at construction."""
    with pytest.raises(ValueError):
        SchedulePolicy(**kwargs)


def test_an_endpoint_is_polled_at_most_every_sweep_gap():
    """The gap between two polls of an endpoint never exceeds a task's minimum."""
    assert SchedulePolicy().endpoint_gap == 0.5
    fast = SchedulePolicy(target_lag=0.05, min_interval=0.02, max_interval=0.25)
    assert fast.endpoint_gap == 0.02
    assert SchedulePolicy(sweep_gap=0.0).endpoint_gap == 0.0
    with pytest.raises(ValueError, match="sweep_gap"):
        SchedulePolicy(sweep_gap=-1.0)
