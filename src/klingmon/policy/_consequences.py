"""What a status change implies, decided once for every path that records one.

A poll, a sweep, a create's answer, a lookup after a lost answer, a callback (in
this process or another) and a local act all end in the same question: who must
hear of it, are files owed, does a slot free, does it teach a duration. The store
writes the first two in the transaction of the change; the engine acts on the
other two. Both ask :func:`consequences`, so no path can forget one.
"""

from __future__ import annotations

from dataclasses import dataclass

from klingmon.domain import IN_FLIGHT, OUTBOX_KINDS, TERMINAL, EventKind, TaskStatus
from klingmon.policy._durations import Phase

__all__ = ["Consequences", "Sample", "Transition", "consequences"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """One applied status change, with the times a duration sample needs (epoch ms).

    ``at_ms`` is when the change happened (Kling's clock where it said, else ours);
    ``created_ms`` when Kling created the task; ``phase_started_ms`` when the phase
    this change ends began.
    """

    old: TaskStatus | None
    new: TaskStatus
    source: str
    #: False for a callback nobody vouched for (no signature, not confirmed).
    trusted: bool = True
    kind: str = EventKind.STATUS
    at_ms: int | None = None
    created_ms: int | None = None
    phase_started_ms: int | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """A learned duration: how long the task spent in ``phase``."""

    phase: Phase
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Consequences:
    """Everything a transition obliges."""

    #: Hooks and forwarded webhooks hear of it (an outbox row).
    heard: bool
    #: The result files are owed (a download row per file).
    owes_files: bool
    #: It ended a task that held one of the account's slots.
    frees_slot: bool
    #: A duration to learn, if the change ended a phase with known ends.
    sample: Sample | None


def consequences(t: Transition) -> Consequences:
    """What ``t`` implies; pure, the same for every source."""
    return Consequences(
        heard=t.kind in OUTBOX_KINDS,
        # An unvouched callback's URLs are never fetched.
        owes_files=t.new is TaskStatus.SUCCEED and t.trusted,
        frees_slot=t.new in TERMINAL and (t.old is None or t.old in IN_FLIGHT),
        sample=_sample(t),
    )


def _sample(t: Transition) -> Sample | None:
    if t.old is None or not t.at_ms:
        return None
    if t.new is TaskStatus.PROCESSING and t.created_ms:
        return Sample(Phase.SUBMITTED, (t.at_ms - t.created_ms) / 1000)
    if (
        t.new is TaskStatus.SUCCEED
        and t.old is TaskStatus.PROCESSING
        and t.phase_started_ms
        and t.at_ms > t.phase_started_ms
    ):
        return Sample(Phase.PROCESSING, (t.at_ms - t.phase_started_ms) / 1000)
    return None
