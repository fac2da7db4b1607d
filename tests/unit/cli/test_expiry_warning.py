"""Report and watch warn about results not downloaded that Kling deletes soon."""

from __future__ import annotations

from klingmon.cli._render import expiring_line, expiry_warning

NOW = 1_779_955_200.0


def test_warns_within_three_days() -> None:
    """Owed files deleted within three days give a warning naming the command."""
    soon = int((NOW + 2 * 86_400) * 1000)
    line = expiry_warning({"pending": 2, "done": 5}, soon, now=NOW)
    assert line is not None
    assert "2 result files not downloaded" in line.plain
    assert "klingmon download --expiring 3d" in line.plain


def test_quiet_when_far_off_or_all_done() -> None:
    """No warning when the first deletion is far off, or nothing is owed."""
    later = int((NOW + 10 * 86_400) * 1000)
    assert expiry_warning({"pending": 2}, later, now=NOW) is None
    assert expiry_warning({"done": 3}, None, now=NOW) is None
    assert expiring_line(0) is None
    line = expiring_line(4)
    assert line is not None
    assert line.plain.startswith("! 4 result files")


def test_past_expiry_is_named() -> None:
    """A file already past its deletion time says so."""
    line = expiry_warning({"failed": 1}, int((NOW - 60) * 1000), now=NOW)
    assert line is not None
    assert "already past" in line.plain
