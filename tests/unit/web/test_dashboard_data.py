"""The dashboard's pure parts: formatting, redaction, bars, ETA, histogram, window."""

from __future__ import annotations

from klingmon.domain import TaskStatus
from klingmon.store import BatchSummary
from klingmon.web._dashboard_data import (
    RequestWindow,
    bar,
    batch_eta,
    fmt_ms,
    fmt_s,
    histogram,
    redact,
)


def test_durations_read_as_people_say_them() -> None:
    """Milliseconds, seconds, minutes and hours each get their own shape."""
    assert fmt_s(None) == ""
    assert fmt_s(0.25) == "250 ms"
    assert fmt_s(4.25) == "4.2 s"
    assert fmt_s(42) == "42 s"
    assert fmt_s(185) == "3 m 05 s"
    assert fmt_s(7620) == "2 h 07 m"
    assert fmt_ms(0) == "1970-01-01 00:00:00Z"
    assert fmt_ms(None) == ""


def test_redaction_hides_secret_keys_at_any_depth() -> None:
    """Secret-looking keys are hidden in dicts and lists; long strings are cut."""
    found = redact(
        {
            "prompt": "ok",
            "callback_url": "https://x/callbacks/kling/t0k3n",
            "items": [{"api_key": "k"}, {"Authorization": "Bearer x"}],
            "image": "B" * 1000,
        }
    )
    assert found["prompt"] == "ok"
    assert found["callback_url"] == "(hidden)"
    assert found["items"] == [{"api_key": "(hidden)"}, {"Authorization": "(hidden)"}]
    assert found["image"].endswith("(1000 characters)")
    assert len(found["image"]) < 100


def test_bar_segments_fill_the_width_in_status_order() -> None:
    """Segments follow STATUS_ORDER, skip empty statuses and sum to 1000."""
    segments = bar({TaskStatus.QUEUED: 1, TaskStatus.SUCCEED: 2, TaskStatus.FAILED: 1})
    assert [s["status"] for s in segments] == ["succeed", "failed", "queued"]
    assert sum(s["width"] for s in segments) == 1000
    assert segments[1]["x"] == 500
    assert bar({}) == []


def test_eta_follows_the_pace_so_far() -> None:
    """Half done in 100 s: 100 s left; none done or all done: no ETA."""
    start = 1_000_000
    half = BatchSummary(
        1,
        counts={TaskStatus.SUCCEED: 5, TaskStatus.PROCESSING: 5},
        first_submitted_ms=start,
    )
    assert batch_eta(half, start + 100_000) == 100
    fresh = BatchSummary(1, counts={TaskStatus.QUEUED: 3}, first_submitted_ms=start)
    assert batch_eta(fresh, start + 5000) is None
    done = BatchSummary(1, counts={TaskStatus.FAILED: 3}, first_submitted_ms=start)
    assert batch_eta(done, start + 5000) is None


def test_histogram_counts_every_value_once() -> None:
    """Bins cover min..max, the maximum lands in the last bin, heights top at 100."""
    values = [1.0, 1.5, 2.0, 9.0, 10.0]
    bins = histogram(values, bins=3)
    assert sum(b["n"] for b in bins) == len(values)
    assert bins[0]["low"] == 1.0
    assert bins[-1]["high"] == 10.0
    assert max(b["height"] for b in bins) == 100
    assert histogram([]) == []
    assert histogram([3.0, 3.0])[0]["n"] == 2


def test_request_window_counts_the_last_hour() -> None:
    """Totals minus the oldest sample within the hour; ``since`` when it is younger."""
    window = RequestWindow()
    first = window.figures(0.0, {"create": 10, "get": 5, "1303": 1})
    assert first["requests"] == 0
    assert first["since_ms"] == 0
    later = window.figures(1800.0, {"create": 20, "get": 15, "1303": 3, "1302": 1})
    assert later["requests"] == 20
    assert later["limited_1303"] == 2
    assert later["limited_1302"] == 1
    assert later["total"] == 35
    hour = window.figures(4000.0, {"create": 30, "get": 15, "1303": 3, "1302": 1})
    # The sample at 0 s has left the window; the one at 1800 s is the base now,
    # and the page says so (no sample was taken near an hour ago).
    assert hour["requests"] == 10
    assert hour["limited_1303"] == 0
    assert hour["since_ms"] == 1_800_000
    full = window.figures(1800.0 + 3599.0, {"create": 40})
    assert full["since_ms"] is None
