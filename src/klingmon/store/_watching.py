"""What a live view asks of the store: who holds the slots, which files are owed."""

from __future__ import annotations

import sqlalchemy as sa

from klingmon.domain import TaskStatus
from klingmon.store._base import StoreBase
from klingmon.store._downloads import _files
from klingmon.store._schema import downloads, tasks

__all__ = ["Watching"]

_HOLDING = (
    TaskStatus.SUBMITTING.value,
    TaskStatus.SUBMITTED.value,
    TaskStatus.PROCESSING.value,
)


class Watching(StoreBase):
    """Read-only counts for ``watch``: cheap enough to run at every redraw."""

    def slots_by_batch(self) -> dict[int, int]:
        """Tasks holding one of the account's slots, per batch id."""
        query = (
            sa.select(tasks.c.batch_id, sa.func.count())
            .where(tasks.c.status.in_(_HOLDING))
            .group_by(tasks.c.batch_id)
        )
        with self._read() as conn:
            return {int(b): int(n) for b, n in conn.execute(query)}

    def files_owed(self, batch_id: int | None = None) -> int:
        """Result files of succeeded tasks (of one batch, or all) not on disk yet.

        Pending, downloading, failed and refused files are owed (a refusal is
        fixed by allowing the origin); expired ones are gone from Kling, so not.
        A success whose files were never queued owes every file its result lists:
        exactly the case a user must hear about.
        """
        succeeded = tasks.c.status == TaskStatus.SUCCEED.value
        if batch_id is not None:
            succeeded = sa.and_(succeeded, tasks.c.batch_id == batch_id)
        not_done = (
            sa.select(sa.func.count())
            .select_from(downloads.join(tasks, downloads.c.task_id == tasks.c.id))
            .where(succeeded, downloads.c.status.not_in(["done", "expired"]))
        )
        unqueued = sa.select(tasks.c.result).where(
            succeeded,
            tasks.c.result.is_not(None),
            ~sa.exists().where(downloads.c.task_id == tasks.c.id),
        )
        with self._read() as conn:
            waiting = int(conn.scalar(not_done) or 0)
            never = sum(len(_files(r)) for r in conn.execute(unqueued).scalars())
        return waiting + never
