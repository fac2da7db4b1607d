"""Stuck detection and caller deadlines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_strategies import distributions, phases

from klingmon.policy import (
    Distribution,
    Phase,
    StuckPolicy,
    is_stuck,
    stuck_after,
    timed_out,
)


def test_floors_from_the_seed():
    """A cold task is stuck after the floors: 600 s submitted, 1800 s processing."""
    policy = StuckPolicy()
    sub = Distribution.prior(Phase.SUBMITTED)
    std = Distribution.prior(Phase.PROCESSING, "std", "5")
    assert stuck_after(policy, sub, Phase.SUBMITTED) == 600
    assert stuck_after(policy, std, Phase.PROCESSING) == 1800
    assert not is_stuck(policy, std, Phase.PROCESSING, 1800)
    assert is_stuck(policy, std, Phase.PROCESSING, 1800.5)


def test_learned_tail_raises_the_threshold():
    """A slow kind of task is stuck only beyond factor x its learned p99."""
    dist = Distribution.prior(Phase.PROCESSING, "pro", "10")
    for _ in range(200):
        dist.add(1500.0)
    after = stuck_after(StuckPolicy(), dist, Phase.PROCESSING)
    assert after == pytest.approx(3 * dist.quantile(0.99))
    assert after > 1800
    assert not is_stuck(StuckPolicy(), dist, Phase.PROCESSING, 1800)


@settings(max_examples=150, deadline=None)
@given(
    dist=distributions(),
    phase=phases,
    factor=st.floats(0.5, 10),
    elapsed=st.floats(0, 1e6),
)
def test_stuck_is_beyond_floor_and_tail(dist, phase, factor, elapsed):
    """Nothing within the floor or factor x p99 is ever called stuck."""
    policy = StuckPolicy(factor=factor)
    if is_stuck(policy, dist, phase, elapsed):
        assert elapsed > policy.floor(phase)
        assert elapsed > factor * dist.quantile(0.99)


def test_policy_rejects_bad_values():
    """A non-positive factor or a negative floor fails at construction."""
    with pytest.raises(ValueError):
        StuckPolicy(factor=0)
    with pytest.raises(ValueError):
        StuckPolicy(floor_processing=-1)


def test_timed_out():
    """A deadline passes at its millisecond; no deadline never times out."""
    assert not timed_out(None, 10**15)
    assert not timed_out(1000, 999)
    assert timed_out(1000, 1000)
    assert timed_out(1000, 1001)
