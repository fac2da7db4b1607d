"""The watch view's extra lines and its closing note, rendered as plain text."""

from __future__ import annotations

import dataclasses
import io

from rich.console import Console

from klingmon.cli._render import WatchFacts, batch_progress, closing_lines
from klingmon.domain import TaskStatus
from klingmon.store import NewTask, Store


def _text(renderable: object) -> str:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(renderable)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_view_shows_elapsed_slots_other_batches_files_and_trouble():
    """Elapsed time, slot use with other batches, files, and Kling trouble."""
    facts = WatchFacts(
        elapsed=75.0,
        slots=5,
        in_use=4,
        other_batches=2,
        other_slots=3,
        files=(2, 1),
        trouble="cannot reach http://127.0.0.1:9 (connection refused)",
        give_up_in=120.0,
        log="3 log warnings, latest task.watch_timeout (run with -v to see them)",
    )
    counts = {TaskStatus.SUCCEED: 2, TaskStatus.PROCESSING: 1}
    text = _text(
        batch_progress(
            "a", counts, eta=None, stuck=0, timed_out=0, failures=[], facts=facts
        )
    )
    assert text.splitlines()[0].split() == ["a", "2/3", "done", "elapsed", "75.0s"]
    assert "slots 4/5 in use (2 other batches hold 3 slots)" in text
    assert "files 2 downloaded, 1 owed" in text
    assert (
        "! cannot reach http://127.0.0.1:9 (connection refused) — retrying "
        "(giving up in 2.0m)" in text
    )
    assert "latest task.watch_timeout (run with -v to see them)" in text
    assert "wait for slots" not in text


def test_view_says_when_other_batches_hold_every_slot():
    """Queued tasks and no slot free because of other batches: the view says so."""
    facts = WatchFacts(
        elapsed=1.0, slots=5, in_use=5, other_batches=1, other_slots=5, queued=3
    )
    text = _text(
        batch_progress(
            "a",
            {TaskStatus.QUEUED: 3},
            eta=None,
            stuck=0,
            timed_out=0,
            failures=[],
            facts=facts,
        )
    )
    assert "slots 5/5 in use (1 other batch holds 5 slots)" in text
    assert "3 tasks wait for slots other batches hold" in text


def test_failures_are_listed_by_row_and_prompt(tmp_path):
    """A failure names its row in the batch and its prompt, not a Kling id."""
    with Store.open(str(tmp_path / "k.db")) as store:
        tasks = [
            NewTask(endpoint="/v1/videos/text2video", body={}, prompt=f"shot {i}")
            for i in range(3)
        ]
        batch = store.tasks.create_batch("b", tasks, 0)
        rows = store.tasks.tasks(batch.id)
    failed = dataclasses.replace(
        rows[1], status=TaskStatus.FAILED, status_msg="risk control", task_id="k-1"
    )
    text = _text(
        batch_progress(
            "b",
            {TaskStatus.FAILED: 1},
            eta=None,
            stuck=0,
            timed_out=0,
            failures=[failed],
        )
    )
    line = next(x for x in text.splitlines() if "#2" in x)
    assert line.split() == ["#2", "shot", "1", "failed", "risk", "control"]
    assert "k-1" not in text


def test_closing_note_names_the_next_steps():
    """Failures point at retry, files at their folder, running tasks at watch."""
    summary = {
        "batch": "b",
        "total": 4,
        "counts": {"succeed": 2, "failed": 1, "processing": 1},
        "failed": 1,
        "outcome": "timeout",
        "elapsed_s": 10.0,
        "files_owed": 0,
    }
    assert closing_lines(summary, out="dl", timeout=10.0) == [
        "b: 2 of 4 succeeded, 1 failed (10.0s).",
        "Files are under dl.",
        "Resubmit the failed tasks with `klingmon retry b`.",
        (
            "Stopped watching after 10.0s: 1 task still running stays tracked; "
            "resume with `klingmon watch b`."
        ),
    ]
    owed = {**summary, "counts": {"succeed": 3}, "failed": 0, "files_owed": 2}
    owed |= {"total": 3, "outcome": "done"}
    assert closing_lines(owed, out="dl", timeout=None) == [
        "b: 3 of 3 succeeded, 0 failed (10.0s).",
        (
            "2 result files are not downloaded yet (see `klingmon report b`); "
            "fetch them with `klingmon download b`."
        ),
    ]
