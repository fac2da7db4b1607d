"""A batch's failures sent again: new tasks linked to the old, in one new batch.

Shared by :meth:`Monitor.retry` and the dashboard's retry button, which needs no
engine (nor client) for it: the new batch is stored, and whichever engine runs
sends it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from klingmon.domain import TaskStatus
from klingmon.errors import NotFoundError, NothingToDoError
from klingmon.policy import is_moderation_failure
from klingmon.store._rows import NewTask

if TYPE_CHECKING:
    from klingmon.store._rows import BatchRow
    from klingmon.store._store import Store

__all__ = ["retry_batch"]


def retry_batch(
    store: Store,
    batch: str | int,
    now_ms: int,
    *,
    name: str | None = None,
    skip_moderated: bool = False,
) -> BatchRow:
    """Store the failed and rejected tasks of ``batch`` as a new batch.

    ``skip_moderated`` leaves out those Kling refused for their content: sent again
    unchanged, they fail the same way.
    """
    old = store.tasks.batch(batch)
    if old is None:
        raise NotFoundError(f"no batch {batch!r}")
    failed = store.tasks.tasks(
        old.id, statuses=[TaskStatus.FAILED, TaskStatus.REJECTED]
    )
    if skip_moderated:
        failed = [
            t
            for t in failed
            if not is_moderation_failure(t.status, t.status_msg, t.last_error)
        ]
    if not failed:
        raise NothingToDoError(
            f"Nothing to retry: batch {old.name} has no failed or rejected tasks"
        )
    tasks = [
        NewTask(
            endpoint=t.endpoint,
            body=t.body,
            prompt=t.prompt,
            model_name=t.model_name,
            mode=t.mode,
            duration=t.duration,
            retry_of=t.id,
        )
        for t in failed
    ]
    # A retry is a new task (a new external id): any of the batch's accounts.
    return store.tasks.create_batch(
        name or f"{old.name}-retry",
        tasks,
        now_ms,
        priority=old.priority,
        accounts=old.accounts,
    )
