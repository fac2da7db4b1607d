"""The price model: keys, the shipped table, overrides, learning, quotes, settling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingmon.domain import TaskStatus
from klingmon.policy import (
    Budget,
    Learned,
    PriceBook,
    PriceSource,
    Spend,
    build_quote,
    fits,
    parse_price_key,
    price_key,
    settle,
    with_remaining,
)

T2V = "/v1/videos/text2video"
NEW = "/text-to-video/kling-3.0"


def test_keys_name_endpoint_model_mode_duration_audio_in_either_generation():
    """Short names resolve; defaults are Kling's; n counts items, not the key."""
    assert price_key("text2video", {}) == ((T2V, "kling-v1", "std", "5", ""), 1)
    legacy = {
        "model_name": "kling-v1-6",
        "mode": "pro",
        "duration": "10",
        "sound": "on",
    }
    assert price_key(T2V, legacy)[0] == (T2V, "kling-v1-6", "pro", "10", "audio")
    body = {"settings": {"resolution": "1080p", "duration": 8, "audio": "native"}}
    assert price_key(NEW, body)[0] == (NEW, "kling-3.0", "1080p", "8", "audio")
    assert price_key("/v1/images/generations", {"n": 4})[1] == 4


def test_the_shipped_table_is_the_prior_and_says_so():
    """§8.4 for legacy, the new table per 5 s, unknown for sound or an odd model."""
    book = PriceBook()
    priced = book.price((T2V, "kling-v1-6", "pro", "10", ""))
    assert (priced.units, priced.source) == (7.0, PriceSource.SHIPPED)
    assert book.price((NEW, "kling-3.0", "1080p", "10", "")).units == pytest.approx(
        6.67
    )
    assert book.price((T2V, "kling-v9", "std", "5", "")).source is PriceSource.UNKNOWN
    assert book.price((NEW, "kling-3.0", "720p", "5", "audio")).units is None


def test_overrides_win_by_the_longest_prefix_and_learning_wins_over_both():
    """``text2video|kling-v9`` prices every kling-v9 clip; a learned price beats it."""
    overrides = {parse_price_key("text2video|kling-v9"): 1.5}
    overrides[parse_price_key("text2video|kling-v9|pro")] = 4.0
    key = (T2V, "kling-v9", "std", "5", "")
    book = PriceBook(overrides=overrides)
    assert book.price(key).units == 1.5
    assert book.price((T2V, "kling-v9", "pro", "5", "")).units == 4.0
    learned = PriceBook({key: Learned(count=4, units=10.0)}, overrides)
    assert learned.price(key).units == 2.5
    assert learned.price(key).source is PriceSource.LEARNED


def test_a_bad_override_key_is_refused():
    """An empty endpoint or too many parts is a clear error."""
    with pytest.raises(ValueError, match="endpoint\\|model"):
        parse_price_key("|kling-v1")
    with pytest.raises(ValueError, match="endpoint\\|model"):
        parse_price_key("a|b|c|d|e|f")


def test_a_quote_groups_rows_and_adds_them_up():
    """Lines per key in first-seen order; unknown prices counted apart."""
    rows = [(T2V, {}), (T2V, {}), (T2V, {"model_name": "kling-v9"}), (T2V, {})]
    quote = build_quote(rows, PriceBook(), slots=2, seconds=lambda _e, _b: 60.0)
    assert [(line.tasks, line.units) for line in quote.lines] == [(3, 3.0), (1, None)]
    assert (quote.units, quote.unknown_tasks, quote.seconds) == (3.0, 1, 120.0)
    assert quote.covered is None
    assert with_remaining(quote, 2.5).covered is False
    assert quote.to_json()["lines"][1]["price"] == "unknown"


def test_settling_a_task():
    """Charged by units, released by a free failure, undetermined without word."""
    assert settle(TaskStatus.SUCCEED, 2.0, 3.0, None) == (Spend.CHARGED, 3.0)
    assert settle(TaskStatus.FAILED, 2.0, 0.0, None) == (Spend.RELEASED, 0.0)
    assert settle(TaskStatus.FAILED, 2.0, 1.0, None) == (Spend.CHARGED, 1.0)
    assert settle(TaskStatus.SUCCEED, 2.0, None, None) == (Spend.UNDETERMINED, 2.0)
    assert settle(TaskStatus.SUCCEED, 2.0, None, 0.3) == (Spend.CHARGED, 2.0)
    assert settle(TaskStatus.SUCCEED, 2.0, 2.0, None, trusted=False) == (
        Spend.UNDETERMINED,
        2.0,
    )
    assert settle(TaskStatus.CANCELLED, None, None, None) == (Spend.RELEASED, 0.0)


@given(
    st.lists(st.floats(0, 100), max_size=20),
    st.floats(0, 1000),
    st.floats(0, 50) | st.none(),
)
def test_fits_never_lets_a_send_over_a_cap(spent, cap, need):
    """Whatever fits keeps every budget within its cap; unknown never fits a cap."""
    budgets = [Budget(cap, s) for s in spent]
    if fits(need, budgets) and budgets:
        assert need is not None
        assert all(b.spent + need <= b.cap + 1e-9 for b in budgets)
    if not budgets:
        assert fits(need, budgets)


def test_a_request_hash_ignores_klingmon_s_ids_and_key_order():
    """Same endpoint and body: same hash, whatever the ids; another body differs."""
    from klingmon.policy import request_hash  # noqa: PLC0415 -- beside its test

    a = request_hash("text2video", {"prompt": "x", "mode": "std"})
    b = request_hash(T2V, {"mode": "std", "prompt": "x", "external_task_id": "e"})
    new = {"prompt": "x", "options": {"external_task_id": "e", "callback_url": "u"}}
    assert a == b
    assert request_hash(NEW, new) == request_hash(NEW, {"prompt": "x"})
    assert request_hash(T2V, {"prompt": "y"}) != a
    assert request_hash(NEW, {"prompt": "x"}) != request_hash(T2V, {"prompt": "x"})
