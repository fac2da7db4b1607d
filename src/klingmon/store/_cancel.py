"""Cancelling tasks that were never sent, and leaving alone those that may have been.

Kling has no cancel: once a create may have reached it, the task is paid for and must
stay tracked. So only a ``queued`` task that no worker is about to send becomes
``cancelled``; a ``submitting`` task (its POST may be under way) and a queued task
leased by a live submitter are reported as *sending*, tasks Kling holds as *at
Kling*. The whole choice is one transaction that holds the submitters' slot lock,
so no claim can slip between the look and the write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import ACTIVE, TERMINAL, TaskStatus
from klingmon.store._convert import task_row
from klingmon.store._rows import Change, TaskRow
from klingmon.store._schema import tasks
from klingmon.store._writes import Pending

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.store._dialect import Dialect

__all__ = ["Cancellation", "cancel"]


@dataclass(frozen=True, slots=True)
class Cancellation:
    """What :meth:`TaskQueue.cancel_tasks` did with each task it was given."""

    #: Were ``queued``, are ``cancelled`` now (one event each, hooks hear of it).
    cancelled: list[Change] = field(default_factory=list)
    #: A create may be under way (``submitting``, or leased to be sent): left alone.
    sending: list[TaskRow] = field(default_factory=list)
    #: Kling holds them (``submitted``, ``processing``): still tracked, still paid.
    at_kling: list[TaskRow] = field(default_factory=list)
    #: Already finished (succeeded, failed, rejected or cancelled before).
    finished: list[TaskRow] = field(default_factory=list)


def cancel(
    conn: sa.Connection,
    dialect: Dialect,
    ids: Sequence[int],
    now_ms: int,
    reason: str,
    *,
    slot_lock: int,
) -> Cancellation:
    """Cancel every task of ``ids`` that was never sent, inside ``conn``'s
    transaction; say what became of each. Unknown ids are skipped.

    ``slot_lock`` is the lock the submitters' claims take: none slips in between.
    """
    result = Cancellation()
    pick = (
        sa.select(tasks)
        .where(tasks.c.id.in_(sorted(set(ids))))
        .order_by(tasks.c.id)  # one lock order, as every other writer
        .with_for_update()
    )
    pending = Pending()
    cancelled: list[tuple[dict[str, Any], int]] = []
    dialect.serialise(conn, slot_lock)
    for m in conn.execute(pick).mappings():
        row = dict(m)
        status = TaskStatus(row["status"])
        leased = (
            row["lease_owner"] is not None and (row["lease_until_ms"] or 0) > now_ms
        )
        if status is TaskStatus.QUEUED and not leased:
            index = pending.change(
                row,
                TaskStatus.CANCELLED,
                now_ms,
                "local",
                {"reason": reason},
                old=status,
                values={"status_msg": reason},
            )
            cancelled.append((row | pending.updates[row["id"]], index))
        elif status in {TaskStatus.QUEUED, TaskStatus.SUBMITTING}:
            result.sending.append(task_row(row))
        elif status in ACTIVE:
            result.at_kling.append(task_row(row))
        else:
            assert status in TERMINAL  # noqa: S101 - every status is one
            result.finished.append(task_row(row))
    event_ids = pending.flush(conn)
    result.cancelled.extend(
        Change(task_row(row), TaskStatus.QUEUED, TaskStatus.CANCELLED, event_ids[i])
        for row, i in cancelled
    )
    return result
