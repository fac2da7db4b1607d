"""Light task references: what a group of callbacks, or a list page, is matched to.

Built once (with expanding parameters): building and caching a statement per call
costs more than running it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import TaskStatus
from klingmon.policy import DEFAULT_ACCOUNT
from klingmon.store._rows import TaskRef
from klingmon.store._schema import tasks
from klingmon.store._writes import ACTIVE_STATES

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["MATCH", "WATCHED", "task_ref"]

_REF_COLUMNS = (
    tasks.c.id,
    tasks.c.external_task_id,
    tasks.c.task_id,
    tasks.c.endpoint,
    tasks.c.status,
    tasks.c.next_poll_ms,
    tasks.c.kling_updated_ms,
    tasks.c.account,
)
# Built once (with expanding parameters): building and caching a statement per call
# costs more than running it.
MATCH = (
    sa.select(*_REF_COLUMNS)
    .where(
        sa.or_(
            tasks.c.external_task_id.in_(sa.bindparam("names", expanding=True)),
            tasks.c.task_id.in_(sa.bindparam("kling", expanding=True)),
        )
    )
    .order_by(tasks.c.id)
)


WATCHED = (
    sa.select(*_REF_COLUMNS)
    .where(
        tasks.c.status.in_(ACTIVE_STATES),
        tasks.c.endpoint == sa.bindparam("endpoint"),
    )
    .order_by(tasks.c.id)
)


def task_ref(values: Sequence[Any]) -> TaskRef:
    """A :class:`TaskRef` of one row of :data:`MATCH` or :data:`WATCHED`."""
    id_, external, kling, endpoint, status, next_poll, updated, account = values
    return TaskRef(
        id_,
        external,
        kling,
        endpoint,
        TaskStatus(status),
        next_poll,
        updated,
        account or DEFAULT_ACCOUNT,
    )
