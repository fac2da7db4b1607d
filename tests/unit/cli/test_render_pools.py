"""The live view names each pool in use when there are several."""

from __future__ import annotations

from rich.console import Console

from klingmon.cli._render import WatchFacts, batch_progress
from klingmon.domain import TaskStatus


def _text(facts: WatchFacts) -> str:
    console = Console(width=200, record=True)
    counts = {TaskStatus.QUEUED: 3, TaskStatus.SUBMITTED: 5}
    view = batch_progress(
        "b", counts, eta=None, stuck=0, timed_out=0, failures=[], facts=facts
    )
    console.print(view)
    return console.export_text()


def test_several_pools_get_a_line_of_their_use():
    facts = WatchFacts(
        elapsed=1.0,
        slots=20,
        in_use=5,
        pools=(("kling-3.0/image", 8, 10), ("kling-3.0/video", 3, 5)),
    )
    assert "pools  kling-3.0/image 8/10 · kling-3.0/video 3/5" in _text(facts)


def test_one_pool_shows_no_pools_line():
    assert "pools" not in _text(WatchFacts(elapsed=1.0, slots=5, in_use=5))
