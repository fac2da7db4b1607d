"""Learned phase durations: prior, learning, quantiles, storage, fallbacks."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from policy_strategies import distributions, durations, modes, phases, seconds

from klingmon.policy import Distribution, DurationBook, Phase, storage_key
from klingmon.policy._durations import HIGH

KEY = ("/v1/videos/text2video", "kling-v2-master", "std", "5")
FAST = settings(max_examples=150, deadline=None)


def test_prior_follows_the_seed_table():
    """Cold start: submitted ~30 s, std 30-120 s, pro 60-300 s, 10-s clips longer."""
    sub = Distribution.prior(Phase.SUBMITTED, "std", "5")
    std = Distribution.prior(Phase.PROCESSING, "std", "5")
    pro = Distribution.prior(Phase.PROCESSING, "pro", "5")
    long = Distribution.prior(Phase.PROCESSING, "std", "10")
    assert sub.quantile(0.9) == pytest.approx(30, rel=0.05)
    assert std.quantile(0.1) == pytest.approx(30, rel=0.05)
    assert std.quantile(0.9) == pytest.approx(120, rel=0.05)
    assert pro.quantile(0.1) == pytest.approx(60, rel=0.05)
    assert pro.quantile(0.9) == pytest.approx(300, rel=0.05)
    assert long.quantile(0.5) > std.quantile(0.5) * 1.3
    assert Distribution.prior(Phase.PROCESSING, "", "").quantile(0.5) == pytest.approx(
        std.quantile(0.5)
    )
    assert sub.count == 0


def test_learns_the_typical_duration():
    """After 200 samples around 40 s the median is close to 40 s."""
    rng = random.Random(7)
    dist = Distribution.prior(Phase.PROCESSING, "pro", "10")
    for _ in range(200):
        dist.add(rng.gauss(40, 4))
    assert dist.count == 200
    assert dist.quantile(0.5) == pytest.approx(40, rel=0.08)
    assert dist.quantile(0.99) < 120


def test_bad_samples_are_ignored():
    """Negative and NaN durations (clock skew, missing data) are not learned."""
    dist = Distribution.prior(Phase.SUBMITTED)
    dist.add(-1.0)
    dist.add(float("nan"))
    assert dist.count == 0
    dist.add(float("inf"))
    assert dist.count == 1


def test_memory_stays_constant():
    """Many samples keep the same bucket count and age old ones out."""
    dist = Distribution.prior(Phase.PROCESSING)
    for _ in range(10_000):
        dist.add(100.0)
    assert len(dist.weights) == len(Distribution.prior(Phase.PROCESSING).weights)
    assert sum(dist.weights) <= 2000
    assert len(dist.to_json()) < 300


def test_rejects_bad_parameters():
    """A prior needs a positive median and spread, and a full set of buckets."""
    with pytest.raises(ValueError):
        Distribution(0.0, 1.0)
    with pytest.raises(ValueError):
        Distribution(10.0, 1.0, [1.0])
    with pytest.raises(ValueError):
        Distribution.from_json('{"v": 99}')


@FAST
@given(dist=distributions(), qs=st.lists(st.floats(0, 1), min_size=2, max_size=10))
def test_quantiles_monotone(dist, qs):
    """Quantiles never decrease with q and stay within the histogram's range."""
    values = [dist.quantile(q) for q in sorted(qs)]
    assert values == sorted(values)
    assert all(0 <= v <= HIGH for v in values)


@FAST
@given(dist=distributions(), q=st.floats(0.001, 0.999))
def test_quantile_inverts_the_cdf(dist, q):
    """cdf(quantile(q)) == q and survival is its complement."""
    t = dist.quantile(q)
    assert dist.cdf(t) == pytest.approx(q, abs=1e-9)
    assert dist.survival(t) == pytest.approx(1 - q, abs=1e-9)


@FAST
@given(dist=distributions(), ts=st.lists(seconds, min_size=2, max_size=10))
def test_survival_monotone(dist, ts):
    """Survival starts at 1, never rises, and stays in [0, 1]."""
    values = [dist.survival(t) for t in sorted(ts)]
    assert values == sorted(values, reverse=True)
    assert all(0 <= v <= 1 for v in values)
    assert dist.survival(0) == 1.0


@FAST
@given(dist=distributions())
def test_json_round_trip(dist):
    """to_json/from_json restore an equal distribution with the same answers."""
    back = Distribution.from_json(dist.to_json())
    assert back == dist
    assert back.count == dist.count
    assert back.quantile(0.99) == dist.quantile(0.99)


@FAST
@given(a=st.lists(seconds, max_size=50), b=st.lists(seconds, max_size=50))
def test_merge_equals_adding_everything(a, b):
    """Merging two workers' histograms equals one worker seeing all samples."""
    left, right, both = (Distribution.prior(Phase.PROCESSING) for _ in range(3))
    for s in a:
        left.add(s)
        both.add(s)
    for s in b:
        right.add(s)
        both.add(s)
    left.merge(right)
    assert left == both
    assert left.copy() == left
    assert left != "not a distribution"


@FAST
@given(first=st.lists(seconds, max_size=30), then=st.lists(seconds, max_size=30))
def test_readings_follow_every_new_sample(first, then):
    """A distribution read, then taught more, reads as one taught it all at once."""
    grown, fresh = (
        Distribution.prior(Phase.PROCESSING),
        Distribution.prior(Phase.PROCESSING),
    )
    for s in first:
        grown.add(s)
    grown.quantile(0.5), grown.cdf(60.0)  # read between the two lots of samples
    other = Distribution.prior(Phase.PROCESSING)
    for s in then:
        other.add(s)
    grown.merge(other)
    for s in (*first, *then):
        fresh.add(s)
    for q in (0.0, 0.1, 0.5, 0.95, 0.99, 1.0):
        assert grown.quantile(q) == fresh.quantile(q)
    for t in (0.5, 30.0, 90.0, 600.0, 20_000.0):
        assert grown.cdf(t) == fresh.cdf(t)


def test_book_falls_back_from_exact_to_endpoint_to_prior():
    """get: the exact key once it has samples, else its endpoint's, else the prior."""
    book = DurationBook()
    other = ("/v1/videos/text2video", "kling-v1", "std", "5")
    assert book.get(KEY, Phase.PROCESSING) == Distribution.prior(
        Phase.PROCESSING, "std", "5"
    )
    for _ in range(30):
        book.observe(other, Phase.PROCESSING, 400.0)
    borrowed = book.get(KEY, Phase.PROCESSING)
    assert borrowed.count == 30
    assert borrowed.quantile(0.5) > 300
    for _ in range(10):
        book.observe(KEY, Phase.PROCESSING, 20.0)
    own = book.get(KEY, Phase.PROCESSING)
    assert own.count == 10
    assert own.quantile(0.5) < 60
    assert book.get(KEY, Phase.SUBMITTED).count == 0


def test_book_learns():
    """After 200 samples of ~40 s the book's median for that key is close to 40."""
    rng = random.Random(3)
    book = DurationBook()
    for _ in range(200):
        book.observe(KEY, Phase.PROCESSING, rng.uniform(36, 44))
    assert book.get(KEY, Phase.PROCESSING).quantile(0.5) == pytest.approx(40, rel=0.08)


def test_book_ignores_bad_samples():
    """A negative duration creates no entry and marks nothing dirty."""
    book = DurationBook()
    book.observe(KEY, Phase.PROCESSING, -5.0)
    assert len(book) == 0
    assert not book.dirty


def test_book_dump_load_and_dirty():
    """dump gives string keys and JSON; load restores; dirty tracks changes."""
    book = DurationBook()
    book.observe(KEY, Phase.PROCESSING, 50.0)
    wide = (KEY[0], "", KEY[2], KEY[3])
    assert book.dirty == {
        storage_key(KEY, Phase.PROCESSING),
        storage_key(wide, Phase.PROCESSING),
    }
    data = book.dump()
    assert not book.dirty
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in data.items())
    assert json.loads(next(iter(data)))[0] == "processing"
    again = DurationBook.load(data)
    assert again.dump() == data
    assert again.get(KEY, Phase.PROCESSING) == book.get(KEY, Phase.PROCESSING)
    book.observe(KEY, Phase.SUBMITTED, 3.0)
    changed = book.dump(dirty_only=True)
    assert set(changed) == {
        storage_key(KEY, Phase.SUBMITTED),
        storage_key(wide, Phase.SUBMITTED),
    }
    assert book.dump(dirty_only=True) == {}
    with pytest.raises(ValueError):
        DurationBook.load({'["processing"]': "{}"})


@FAST
@given(
    endpoint=st.text(max_size=20),
    model=st.text(max_size=20),
    mode=modes,
    duration=durations,
    phase=phases,
)
def test_storage_keys_round_trip(endpoint, model, mode, duration, phase):
    """Any key parts, even with separators in them, survive dump and load."""
    book = DurationBook()
    key = (endpoint, model, mode, duration)
    book.observe(key, phase, 12.0)
    again = DurationBook.load(book.dump())
    assert again.get(key, phase) == book.get(key, phase)


def test_repr_is_a_summary():
    """The repr shows the sample count and the median and p99, not the buckets."""
    text = repr(Distribution.prior(Phase.PROCESSING))
    assert text.startswith("Distribution(count=0, p50=60.0")
    assert "p99=" in text
