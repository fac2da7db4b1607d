"""Which status changes a task may make: ranks only rise, terminal is final.

Pure functions; the store applies them inside the transaction that writes the change,
so a late poll, a duplicate callback or an out-of-order delivery can never move a task
backwards.
"""

from __future__ import annotations

from klingmon.domain import TERMINAL, TaskStatus

__all__ = ["RANK", "Verdict", "judge", "rank"]

#: Progress order; every terminal status shares the top rank.
RANK: dict[TaskStatus, int] = {
    TaskStatus.QUEUED: 0,
    TaskStatus.SUBMITTING: 1,
    TaskStatus.SUBMITTED: 2,
    TaskStatus.PROCESSING: 3,
    TaskStatus.SUCCEED: 4,
    TaskStatus.FAILED: 4,
    TaskStatus.REJECTED: 4,
    TaskStatus.CANCELLED: 4,
}

# Local-only moves that lower the rank on purpose: a 1303 puts a task back in the queue.
_ALLOWED_DOWN = frozenset({(TaskStatus.SUBMITTING, TaskStatus.QUEUED)})


def rank(status: TaskStatus) -> int:
    return RANK[status]


class Verdict:
    """The outcome of judging one observed status against the stored one."""

    APPLY = "apply"  # a real change: record it and act on it
    REFRESH = "refresh"  # same status, newer data (e.g. result fields): store quietly
    IGNORE = "ignore"  # stale, duplicate or backwards: log only


def judge(
    current: TaskStatus,
    current_updated_ms: int | None,
    new: TaskStatus,
    new_updated_ms: int | None,
) -> str:
    """Decide what to do with ``new`` given ``current``; see :class:`Verdict`."""
    if current in TERMINAL:
        return Verdict.IGNORE
    if (current, new) in _ALLOWED_DOWN:
        return Verdict.APPLY
    old_rank, new_rank = RANK[current], RANK[new]
    if new_rank != old_rank:
        return Verdict.APPLY if new_rank > old_rank else Verdict.IGNORE
    newer = (
        new == current
        and new_updated_ms is not None
        and current_updated_ms is not None
        and new_updated_ms > current_updated_ms
    )
    return Verdict.REFRESH if newer else Verdict.IGNORE
