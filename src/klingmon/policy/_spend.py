"""The spend ledger of one task, and whether a send fits under the caps.

A task is ``reserved`` when it is claimed for sending (its quoted units), then
settled when it ends: ``charged`` when Kling names a charge, ``released`` for a
failure, a refusal or a cancel with nothing charged, ``undetermined`` when a task
succeeded but Kling never said what it cost (its reservation keeps counting).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from klingmon.domain import TaskStatus

__all__ = ["Budget", "Spend", "fits", "settle"]


class Spend(StrEnum):
    RESERVED = "reserved"
    CHARGED = "charged"
    RELEASED = "released"
    UNDETERMINED = "undetermined"


def settle(
    status: TaskStatus,
    reserved: float | None,
    units: float | None,
    cash: float | None,
    *,
    trusted: bool = True,
) -> tuple[Spend, float]:
    """A finished task's spend state, and the units it counts against the caps.

    A charge in cash only counts its reservation (units and cash do not convert); a
    success nobody vouched for (an unconfirmed callback) settles nothing.
    """
    held = reserved or 0.0
    if status is TaskStatus.SUCCEED and not trusted:
        return Spend.UNDETERMINED, held
    if units is not None and units > 0:
        return Spend.CHARGED, units
    if cash is not None and cash > 0:
        return Spend.CHARGED, held
    if status is TaskStatus.SUCCEED and units is None:
        return Spend.UNDETERMINED, held
    return (Spend.CHARGED if status is TaskStatus.SUCCEED else Spend.RELEASED), 0.0


@dataclass(frozen=True, slots=True)
class Budget:
    """A cap and what already counts against it (reserved + charged), in units."""

    cap: float
    spent: float

    @property
    def left(self) -> float:
        return max(0.0, self.cap - self.spent)


def fits(need: float | None, budgets: list[Budget]) -> bool:
    """Whether a send of ``need`` units stays within every budget.

    A price nobody knows never fits under a cap (there is no cap to check it by);
    without caps everything fits. A hair of float slack keeps exact fits fitting.
    """
    if not budgets:
        return True
    if need is None:
        return False
    return all(b.spent + need <= b.cap + 1e-9 for b in budgets)
