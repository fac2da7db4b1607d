"""What people see: the live batch view and the report, rendered as plain text."""

from __future__ import annotations

import io

from rich.console import Console

from klingmon.cli._render import batch_progress, report_view
from klingmon.domain import TaskStatus
from klingmon.store import Report


def _text(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_batch_view_shows_progress_counts_eta_and_flags():
    """Name, done/total, ETA, a bar on its own line, counts, and the stuck line."""
    counts = {TaskStatus.SUCCEED: 6, TaskStatus.PROCESSING: 3, TaskStatus.QUEUED: 1}
    lines = _text(
        batch_progress("launch", counts, eta=95.0, stuck=1, timed_out=2, failures=[])
    ).splitlines()
    assert lines[0].split() == ["launch", "6/10", "done", "ETA", "1.6m"]
    assert set(lines[1].strip()) <= {"━", "╺", "╸"}
    assert "succeed 6" in lines[2]
    assert "processing 3" in lines[2]
    assert "queued 1" in lines[2]
    assert "stuck 1  past deadline 2 (still tracked)" in lines[3]


def test_report_shows_times_units_and_requests():
    """The report's rows carry the figures a user checks after a batch."""
    report = Report(
        batch_id=1,
        total=4,
        by_status={TaskStatus.SUCCEED: 3, TaskStatus.FAILED: 1},
        queue_p50_s=12.0,
        queue_p95_s=30.5,
        processing_p50_s=95.0,
        processing_p95_s=250.0,
        failures={"Image pixel is invalid": 1},
        units=7.5,
        stuck=0,
        watch_timeout=0,
        learned_via={"sweep": 4},
        requests={"create": 4, "list": 6},
        requests_per_task=2.5,
    )
    text = _text(report_view("b", report))
    assert "succeed 3  failed 1" in text
    assert "12.0s / 30.5s" in text
    assert "1.6m / 4.2m" in text
    assert "units spent" in text
    assert "7.5" in text
    assert "create 4, list 6" in text
    assert "2.50" in text
    assert "Image pixel is invalid" in text
