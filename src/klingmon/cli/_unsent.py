"""The one line that says a batch is stored but not sent, and how to send or drop it.

A stored batch is sent by whatever engine runs next on the store; one the user has
forgotten would be paid for then without a word. So every command that notices queued
tasks says so, naming ``klingmon watch NAME`` and ``klingmon cancel NAME`` (a running
worker may be about to send them: the line says "not sent yet", which stays true).
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from klingmon.domain import TaskStatus

if TYPE_CHECKING:
    from klingmon.store import Store

__all__ = ["unsent_line", "unsent_lines"]


def unsent_line(name: str, waiting: int) -> str:
    """``Batch NAME: N tasks stored but not sent; …`` (plain text, no markup)."""
    quoted = shlex.quote(name)
    noun = "task" if waiting == 1 else "tasks"
    return (
        f"Batch {name}: {waiting} {noun} stored but not sent yet; send with "
        f"`klingmon watch {quoted}`, or drop with `klingmon cancel {quoted}`."
    )


def unsent_lines(store: Store, batch_id: int | None = None) -> list[str]:
    """A line for each batch (or only ``batch_id``) with queued tasks."""
    summaries = store.reports.batch_summaries()
    lines = []
    for batch in store.tasks.batches():
        if batch_id is not None and batch.id != batch_id:
            continue
        summary = summaries.get(batch.id)
        waiting = summary.counts.get(TaskStatus.QUEUED, 0) if summary else 0
        if waiting:
            lines.append(unsent_line(batch.name, waiting))
    return lines
