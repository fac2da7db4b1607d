"""Which waiting batches get a freed slot first: priorities, FIFO, and aging.

A batch has a priority (an integer, 0 unless given; higher goes first). The batches
waiting with one priority form a *level*; within a level, tasks go in the claim
order of old (local id order: FIFO). Between levels, each level's *effective*
priority decides::

    effective = priority + floor(starved / aging)

where ``starved`` is how long the level has waited for a slot: since a task of one
of its waiting batches was last claimed for sending, or, when none of them ever had
one, since the oldest of them was stored. Ties go to the level that has waited
longer, then to the higher priority. So a level that gets slots does not age, and a
level that gets none gains one step per ``aging`` (ten minutes unless configured):
a priority ``P`` above it holds every slot for at most ``P`` steps, then the level
below gets one slot, its wait starts again, and so on. Nothing starves forever, and
urgent work still takes (nearly) every slot, however long the big batch has been
queued (aging by time since a task was *stored* would not do that: a 10,000-task
batch queued for a day would outrank every urgent batch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "AGING_MS",
    "AGING_RULE",
    "PRIORITY_LIMIT",
    "Waiting",
    "effective_priority",
    "level_order",
    "priority_problem",
]

#: One step of aging: a level waiting this long counts one priority higher.
AGING_MS = 10 * 60_000

#: The rule in one sentence, for help texts and documents.
AGING_RULE = (
    "Freed slots go to the highest priority first, FIFO within one priority. "
    "A priority that gets no slot ages: each 10 minutes it waits "
    "(priority_aging, KLINGMON_PRIORITY_AGING, in seconds) counts one higher, "
    "so a lower batch still gets a slot now and then and none starves."
)


#: Priorities lie within ±this (a 32-bit column holds them with room for aging).
PRIORITY_LIMIT = 1_000_000


def priority_problem(value: int) -> str | None:
    """What is wrong with ``value`` as a priority; None when nothing is."""
    if -PRIORITY_LIMIT <= value <= PRIORITY_LIMIT:
        return None
    return f"priority must be within -{PRIORITY_LIMIT}..{PRIORITY_LIMIT}, not {value}"


@dataclass(frozen=True, slots=True)
class Waiting:
    """A batch with tasks waiting to be sent, as the claim sees it."""

    batch_id: int
    priority: int
    created_ms: int
    #: When a task of it was last claimed for sending (None: never).
    served_ms: int | None


def effective_priority(
    priority: int, since_ms: int, now_ms: int, aging_ms: int = AGING_MS
) -> int:
    """``priority`` plus one per whole ``aging_ms`` waited since ``since_ms``."""
    if aging_ms <= 0:
        raise ValueError(f"aging_ms must be positive, not {aging_ms}")
    return priority + max(0, now_ms - since_ms) // aging_ms


def _since(level: list[Waiting]) -> int:
    """When a level started waiting: its last slot, else its oldest batch's store."""
    served = [w.served_ms for w in level if w.served_ms is not None]
    return max(served) if served else min(w.created_ms for w in level)


def level_order(
    waiting: Iterable[Waiting], now_ms: int, aging_ms: int = AGING_MS
) -> list[list[int]]:
    """The waiting batches' ids, one list per level, levels in the order they get
    slots; within a level in id order (the tasks of a level go by local id)."""
    levels: dict[int, list[Waiting]] = {}
    for w in waiting:
        levels.setdefault(w.priority, []).append(w)

    def key(priority: int) -> tuple[int, int, int]:
        since = _since(levels[priority])
        return (
            -effective_priority(priority, since, now_ms, aging_ms),
            since,
            -priority,
        )

    return [sorted(w.batch_id for w in levels[p]) for p in sorted(levels, key=key)]
