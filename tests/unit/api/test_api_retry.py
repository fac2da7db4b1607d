"""Pure retry decisions: backoff bounds, full jitter, Retry-After, poll growth."""

from __future__ import annotations

import random

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingmon.api import RetryPolicy
from klingmon.api._retry import (
    create_not_created,
    is_ambiguous_transport,
    is_transient,
    parse_retry_after,
    poll_delay,
)
from klingmon.errors import (
    AuthError,
    ConcurrencyLimitError,
    InvalidRequestError,
    RateLimitError,
    ServerError,
    TaskNotFoundError,
    TransportError,
    UnexpectedResponseError,
)


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    seed=st.integers(min_value=0, max_value=2**32),
    base=st.floats(min_value=0, max_value=10),
    cap=st.floats(min_value=0, max_value=120),
)
def test_backoff_within_full_jitter_bounds(attempt, seed, base, cap):
    """Every delay lies in [0, min(cap, base * 2^(attempt-1))]."""
    policy = RetryPolicy(base=base, cap=cap)
    delay = policy.backoff(attempt, random.Random(seed))
    assert 0 <= delay <= min(cap, base * 2.0 ** min(attempt - 1, 62))


def test_backoff_ceiling_grows_then_caps():
    """The ceiling doubles from base until it reaches the cap."""
    policy = RetryPolicy(base=0.5, cap=4.0)
    assert [policy.ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_backoff_jitter_is_full_range():
    """Full jitter: samples spread over the whole [0, ceiling] range."""
    policy = RetryPolicy(base=1.0, cap=8.0)
    rng = random.Random(7)
    samples = [policy.backoff(4, rng) for _ in range(2000)]
    assert min(samples) < 0.5
    assert max(samples) > 7.5


@given(retry_after=st.floats(min_value=0.01, max_value=1e6), seed=st.integers(0, 1000))
def test_retry_after_is_a_capped_floor(retry_after, seed):
    """Retry-After raises the delay to at least itself, but never beyond the cap."""
    policy = RetryPolicy(base=0.1, cap=30.0)
    delay = policy.backoff(1, random.Random(seed), retry_after)
    assert delay >= min(retry_after, 30.0)
    assert delay <= 30.0


def test_parse_retry_after_seconds_and_date():
    """Retry-After is read as delta-seconds or as an HTTP date."""
    now = 1_750_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(" 1.5 ", now) == 1.5
    assert parse_retry_after(None, now) is None
    assert parse_retry_after("soon", now) is None
    date = "Sun, 15 Jun 2025 15:06:50 GMT"  # 10 s after `now`
    assert parse_retry_after(date, now) == pytest.approx(10.0)
    assert parse_retry_after(date, now + 100) == 0.0


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (TransportError("reset"), True),
        (RateLimitError("slow down", status_code=429, code=1302), True),
        (ServerError("boom", status_code=500, code=5000), True),
        (ServerError("busy", status_code=504, code=5002), True),
        (UnexpectedResponseError("html", status_code=502), True),
        (UnexpectedResponseError("html", status_code=200), True),
        (UnexpectedResponseError("html", status_code=403), False),
        (ConcurrencyLimitError("full", status_code=429, code=1303), True),
        (AuthError("expired", status_code=401, code=1004), False),
        (TaskNotFoundError("gone", status_code=404, code=1203), False),
        (InvalidRequestError("bad", status_code=400, code=1201), False),
    ],
)
def test_is_transient(error, transient):
    """Network failures, 429s, server-side failures and garbled answers are retried."""
    assert is_transient(error) is transient


def test_connect_failures_are_not_ambiguous():
    """Only a failure to connect proves that nothing was sent."""
    assert not is_ambiguous_transport(httpx.ConnectError("refused"))
    assert not is_ambiguous_transport(httpx.ConnectTimeout("slow"))
    assert is_ambiguous_transport(httpx.ReadTimeout("slow"))
    assert is_ambiguous_transport(httpx.RemoteProtocolError("dropped"))
    assert is_ambiguous_transport(httpx.WriteError("broken"))


def test_create_not_created_only_for_kling_5xxx():
    """Only an envelope with 5000-5002 says the create failed at Kling."""
    assert create_not_created(ServerError("x", status_code=500, code=5000))
    assert create_not_created(ServerError("x", status_code=504, code=5002))
    assert not create_not_created(ServerError("x", status_code=502))
    assert not create_not_created(RateLimitError("x", status_code=429, code=1302))


@given(poll=st.integers(1, 500), seed=st.integers(0, 10_000))
def test_poll_delay_bounded(poll, seed):
    """Poll pauses stay within [0.8 * first, cap]."""
    delay = poll_delay(poll, random.Random(seed), first=2.0, cap=30.0)
    assert 1.6 <= delay <= 30.0


def test_poll_delay_grows():
    """The pause grows about 1.5x per poll until the cap."""
    rng = random.Random(1)
    delays = [poll_delay(n, rng, first=2.0, cap=30.0) for n in range(1, 12)]
    assert delays[0] <= 2.4
    assert delays[5] > delays[0] * 3
    assert delays[-1] >= 24.0
