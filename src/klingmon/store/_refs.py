"""Light lookups of :class:`Store`: the tasks a group of callbacks, or a list page,
names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import TaskStatus
from klingmon.store._base import StoreBase
from klingmon.store._rows import TaskRef
from klingmon.store._schema import tasks
from klingmon.store._writes import ACTIVE_STATES

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Refs"]

_REF_COLUMNS = (
    tasks.c.id,
    tasks.c.external_task_id,
    tasks.c.task_id,
    tasks.c.endpoint,
    tasks.c.status,
    tasks.c.next_poll_ms,
    tasks.c.kling_updated_ms,
)
# Built once (with expanding parameters): building and caching a statement per call
# costs more than running it.
_MATCH = (
    sa.select(*_REF_COLUMNS)
    .where(
        sa.or_(
            tasks.c.external_task_id.in_(sa.bindparam("names", expanding=True)),
            tasks.c.task_id.in_(sa.bindparam("kling", expanding=True)),
        )
    )
    .order_by(tasks.c.id)
)


_WATCHED = (
    sa.select(*_REF_COLUMNS)
    .where(
        tasks.c.status.in_(ACTIVE_STATES),
        tasks.c.endpoint == sa.bindparam("endpoint"),
    )
    .order_by(tasks.c.id)
)


def task_ref(values: Sequence[Any]) -> TaskRef:
    id_, external, kling, endpoint, status, next_poll, updated = values
    return TaskRef(
        id_, external, kling, endpoint, TaskStatus(status), next_poll, updated
    )


class Refs(StoreBase):
    """Lookups sized for a group of callbacks or a list page: one query each."""

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
            for ref in map(task_ref, conn.execute(_MATCH, params)):
                by_external[ref.external_task_id] = ref
                if ref.task_id is not None:
                    by_kling.setdefault(ref.task_id, ref)  # the oldest wins
        found: list[TaskRef | None] = []
        for external, kling in refs:
            match = by_external.get(external) if external else None
            if match is None and kling:
                match = by_kling.get(kling) or by_external.get(kling)
            found.append(match)
        return found

    def watched(self, endpoint: str) -> list[TaskRef]:
        """Every task Kling holds on ``endpoint``, by id: what a list page is
        matched against, without building hundreds of full rows per sweep."""
        with self._read() as conn:
            return [task_ref(v) for v in conn.execute(_WATCHED, {"endpoint": endpoint})]
