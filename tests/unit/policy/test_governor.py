"""The request budget: AIMD rate, submission slots, retry backoff."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from klingmon.policy import Aimd, SlotLimit, backoff

FAST = settings(max_examples=150, deadline=None)


@FAST
@given(
    events=st.lists(st.booleans(), max_size=300),
    rate=st.floats(0.01, 100),
    floor=st.floats(0.05, 5),
    span=st.floats(0, 50),
)
def test_aimd_stays_in_bounds(events, rate, floor, span):
    """The rate stays in [floor, ceiling]; throttles lower it, successes never do."""
    aimd = Aimd(rate=rate, floor=floor, ceiling=floor + span)
    for throttled in events:
        before = aimd.rate
        if throttled:
            aimd.on_throttle()
            assert aimd.rate < before or aimd.rate == aimd.floor
        else:
            aimd.on_success()
            assert aimd.rate >= before
        assert aimd.floor <= aimd.rate <= aimd.ceiling
        assert aimd.interval() == pytest.approx(1 / aimd.rate)


def test_aimd_halves_then_recovers():
    """A throttle halves the rate; about a second of successes adds `increase`."""
    aimd = Aimd(rate=10.0)
    aimd.on_throttle()
    assert aimd.rate == 5.0
    for _ in range(5):
        aimd.on_success()
    assert aimd.rate == pytest.approx(5.5, abs=0.05)
    for _ in range(10_000):
        aimd.on_success()
    assert aimd.rate == aimd.ceiling


def test_aimd_rejects_bad_values():
    """Contradictory AIMD settings fail at construction."""
    with pytest.raises(ValueError):
        Aimd(floor=0)
    with pytest.raises(ValueError):
        Aimd(floor=5, ceiling=1)
    with pytest.raises(ValueError):
        Aimd(decrease=1.0)


@FAST
@given(
    slots=st.integers(1, 50),
    ops=st.lists(st.one_of(st.none(), st.integers(-5, 100)), max_size=200),
)
def test_slot_limit_in_bounds(slots, ops):
    """The limit never exceeds the configured slots nor drops below 1."""
    limit = SlotLimit.of(slots)
    for op in ops:
        if op is None:
            limit.on_task_finished()
        else:
            before = limit.limit
            limit.on_concurrency_error(op)
            assert limit.limit <= before
        assert 1 <= limit.limit <= limit.ceiling == slots
        assert 0 <= limit.available(0) <= slots


def test_slot_limit_shrinks_on_1303_and_grows_back():
    """1303 shrinks to what was in flight; finished tasks give slots back slowly."""
    limit = SlotLimit.of(5)
    assert limit.available(2) == 3
    limit.on_concurrency_error(3)
    assert limit.limit == 3
    assert limit.available(3) == 0
    limit.on_concurrency_error(0)
    assert limit.limit == 1
    for _ in range(limit.grow_every - 1):
        limit.on_task_finished()
    assert limit.limit == 1
    limit.on_task_finished()
    assert limit.limit == 2
    for _ in range(100):
        limit.on_task_finished()
    assert limit.limit == 5
    assert limit.available(9) == 0


def test_slot_limit_clamps_and_validates():
    """An initial limit outside 1..ceiling is clamped; a ceiling below 1 is refused."""
    assert SlotLimit(limit=9, ceiling=4).limit == 4
    assert SlotLimit(limit=0, ceiling=4).limit == 1
    with pytest.raises(ValueError):
        SlotLimit.of(0)


@FAST
@given(
    attempt=st.integers(-10, 10_000),
    base=st.floats(0, 10),
    cap=st.floats(0, 600),
    seed=st.integers(0, 2**32),
)
def test_backoff_bounded(attempt, base, cap, seed):
    """Backoff is in [0, min(cap, base * 2**attempt)], even for huge attempts."""
    delay = backoff(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert 0 <= delay <= cap
    if 0 <= attempt < 30:
        assert delay <= base * 2**attempt


def test_backoff_grows():
    """Later attempts draw from a wider window (full jitter)."""
    rng = random.Random(0)
    early = max(backoff(0, base=1, cap=60, rng=rng) for _ in range(200))
    late = max(backoff(5, base=1, cap=60, rng=rng) for _ in range(200))
    assert early <= 1
    assert 20 < late <= 32
