"""The receiver's part of :class:`Store`: the tasks a group of callbacks names."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from klingmon.api._models import TaskStatus
from klingmon.store._base import StoreBase
from klingmon.store._rows import TaskRef
from klingmon.store._schema import tasks

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Callbacks"]

# Built once, with expanding parameters: building and caching a statement per call
# costs more than running it.
_MATCH = (
    sa.select(
        tasks.c.id,
        tasks.c.external_task_id,
        tasks.c.task_id,
        tasks.c.endpoint,
        tasks.c.status,
        tasks.c.next_poll_ms,
    )
    .where(
        sa.or_(
            tasks.c.external_task_id.in_(sa.bindparam("names", expanding=True)),
            tasks.c.task_id.in_(sa.bindparam("kling", expanding=True)),
        )
    )
    .order_by(tasks.c.id)
)


class Callbacks(StoreBase):
    """Lookups sized for the receiver's group commit: one query per group."""

    def match_tasks(
        self, refs: Sequence[tuple[str | None, str | None]]
    ) -> list[TaskRef | None]:
        """The task each ``(external_task_id, task_id)`` names, all in one query.

        The task with that ``external_task_id`` when there is one; else, like
        :meth:`task`, the oldest with that Kling ``task_id``, else the task whose
        ``external_task_id`` is that ``task_id``.
        """
        names = {r for ref in refs for r in ref if r}
        if not names:
            return [None] * len(refs)
        kling_ids = {tid for _, tid in refs if tid}
        params = {"names": sorted(names), "kling": sorted(kling_ids)}
        by_external: dict[str, TaskRef] = {}
        by_kling: dict[str, TaskRef] = {}
        with self._read() as conn:
            for id_, external, kling, endpoint, status, next_poll in conn.execute(
                _MATCH, params
            ):
                ref = TaskRef(
                    id_, external, kling, endpoint, TaskStatus(status), next_poll
                )
                by_external[external] = ref
                if kling is not None:
                    by_kling.setdefault(kling, ref)  # the oldest wins
        found: list[TaskRef | None] = []
        for external, kling in refs:
            match = by_external.get(external) if external else None
            if match is None and kling:
                match = by_kling.get(kling) or by_external.get(kling)
            found.append(match)
        return found
