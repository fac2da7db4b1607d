"""The download command's pieces: time spans and the progress bars."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.progress import Progress

from klingmon.cli._download import _Bars, download_settings, parse_span
from klingmon.downloads import DEFAULT_ALLOW_HOSTS, DownloadEvent
from klingmon.errors import ConfigError


def test_parse_span() -> None:
    """3d, 12h, 90m, 30s and plain seconds are understood; nonsense is refused."""
    assert parse_span("3d") == 259_200
    assert parse_span("12h") == 43_200
    assert parse_span("90m") == 5_400
    assert parse_span("1.5w") == 907_200
    assert parse_span("45") == 45
    with pytest.raises(ConfigError, match="try 3d"):
        parse_span("soon")


def test_settings_defaults() -> None:
    """Without hosts the Kling CDN allowlist applies; a bad origin is refused."""
    settings = download_settings(out="x")
    assert settings.allow_hosts == DEFAULT_ALLOW_HOSTS
    with pytest.raises(ConfigError, match="not an origin"):
        download_settings(out="x", allow_origins=["localhost"])


def test_bars_follow_events() -> None:
    """Big files get a bar of their own until done; the batch bar counts files."""
    console = Console(file=io.StringIO(), force_terminal=False)
    progress = Progress(console=console)
    bars = _Bars(progress, total=2)
    big = 64 * 1024 * 1024
    bars(DownloadEvent("progress", 1, "/o/a.mp4", 1024, big))
    bars(DownloadEvent("progress", 2, "/o/b.mp4", 10, 100))
    assert set(bars.files) == {1}
    bars(DownloadEvent("done", 1, "/o/a.mp4", big, big))
    bars(DownloadEvent("failed", 2, "/o/b.mp4", error="boom"))
    assert bars.files == {}
    assert progress.tasks[0].completed == 2
