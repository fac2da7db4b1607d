"""klingmon's own words: task statuses and their sets, events, sources, file states.

No I/O and no wire format live here. Each Kling API generation has an adapter in
``klingmon.api`` that maps its spelling onto these names; the store, the engine, the
receiver, the dashboard and the reports speak only these.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "ACTIVE",
    "FAILURES",
    "IN_FLIGHT",
    "KLING_STATUSES",
    "OUTBOX_KINDS",
    "POLL_SOURCES",
    "RESULT_KINDS",
    "TERMINAL",
    "WAITING",
    "BatchState",
    "Cost",
    "DownloadState",
    "EventKind",
    "Snapshot",
    "Source",
    "TaskStatus",
]


class TaskStatus(StrEnum):
    """Every state a task can be in; Kling's four keep the legacy wire spelling."""

    #: Stored locally, waiting for a submission slot.
    QUEUED = "queued"
    #: The intent to create is stored; the POST may or may not have reached Kling.
    SUBMITTING = "submitting"
    #: Kling accepted the task and queued it.
    SUBMITTED = "submitted"
    #: Kling is generating.
    PROCESSING = "processing"
    #: Kling finished and the results are available (stored as the legacy ``succeed``).
    SUCCEED = "succeed"
    #: Kling gave up on the task; its message says why.
    FAILED = "failed"
    #: Kling refused the create (validation, policy, depleted pack); nothing billed.
    REJECTED = "rejected"
    #: The user cancelled the task before it was sent.
    CANCELLED = "cancelled"


#: The states a task never leaves.
TERMINAL = frozenset(
    {TaskStatus.SUCCEED, TaskStatus.FAILED, TaskStatus.REJECTED, TaskStatus.CANCELLED}
)
#: The states in which Kling holds the task and it must be watched.
ACTIVE = frozenset({TaskStatus.SUBMITTED, TaskStatus.PROCESSING})
#: Not yet sent, or sent without an answer: the states a run still has to send.
WAITING = (TaskStatus.QUEUED, TaskStatus.SUBMITTING)
#: The states that take one of the account's slots.
IN_FLIGHT = (TaskStatus.SUBMITTING, TaskStatus.SUBMITTED, TaskStatus.PROCESSING)
#: The ends in which the user got nothing: a retry candidate.
FAILURES = (TaskStatus.FAILED, TaskStatus.REJECTED)
#: The statuses Kling itself reports.
KLING_STATUSES = frozenset(
    {
        TaskStatus.SUBMITTED,
        TaskStatus.PROCESSING,
        TaskStatus.SUCCEED,
        TaskStatus.FAILED,
    }
)


class EventKind(StrEnum):
    """What an event in a task's history records."""

    #: The status changed.
    STATUS = "status"
    #: An unconfirmed callback said something; nothing changed.
    HINT = "hint"
    #: The task runs far longer than its kind usually takes.
    STUCK = "stuck"
    #: The task passed the batch's deadline.
    WATCH_TIMEOUT = "watch_timeout"
    #: Kling refused the create.
    REJECTED = "rejected"
    #: What Kling holds differs from what was sent (a create answered twice).
    DRIFT = "drift"
    #: The batch's priority changed while the task waited to be sent.
    PRIORITY = "priority"
    #: The next send would go over a spending cap: the batch is ``paused: budget``.
    BUDGET = "budget"


#: Event kinds that hooks and forwarded webhooks must hear about.
OUTBOX_KINDS = frozenset(
    {
        EventKind.STATUS,
        EventKind.STUCK,
        EventKind.WATCH_TIMEOUT,
        EventKind.REJECTED,
        EventKind.DRIFT,
        EventKind.BUDGET,
    }
)


class Source(StrEnum):
    """Where a fact about a task came from."""

    #: The create's answer, or the lookup after a lost one.
    SUBMIT = "submit"
    #: A query of the one task.
    POLL = "poll"
    #: A list page (or, on the new generation, a filtered task query).
    SWEEP = "sweep"
    #: A callback Kling sent.
    CALLBACK = "callback"
    #: klingmon itself (cancel, track, import, a watchdog flag).
    LOCAL = "local"


#: The sources that ask Kling; their answers are trusted as they come.
POLL_SOURCES = frozenset({Source.POLL, Source.SWEEP})


class BatchState(StrEnum):
    """Why nothing of a batch is sent (a batch that runs has no state)."""

    #: Stored with its quote, waiting for ``klingmon approve``.
    AWAITING_APPROVAL = "awaiting_approval"
    #: Its next send would go over a cap; ``klingmon resume`` goes on.
    PAUSED_BUDGET = "paused_budget"

    @property
    def label(self) -> str:
        """How ``status`` and ``watch`` say it."""
        return {
            "awaiting_approval": "awaiting approval",
            "paused_budget": "paused: budget",
        }[self.value]


class DownloadState(StrEnum):
    """Where one owed result file stands."""

    PENDING = "pending"
    DOWNLOADING = "downloading"
    DONE = "done"
    FAILED = "failed"
    #: The file failed a check that a retry cannot fix (type, size, origin).
    REFUSED = "refused"
    #: The URL's 30 days passed before the file was fetched.
    EXPIRED = "expired"


#: The lists of a stored result, by the kind of file each holds. A result is stored
#: as ``{"videos": [{"url": ...}, ...], "images": [...], ...}`` whatever the wire
#: generation, so the download queue reads one shape.
RESULT_KINDS = {
    "videos": "video",
    "images": "image",
    "audios": "audio",
    "voices": "voice",
    "elements": "element",
}


@dataclass(frozen=True, slots=True)
class Cost:
    """What Kling charged for one task, whichever generation said it.

    Legacy ``final_unit_deduction`` is ``units`` and ``final_balance_deduction`` is
    ``cash``; the new generation's ``billing[]`` items add up into the same fields.
    """

    #: Resource-pack units deducted.
    units: float | None = None
    #: Balance deducted (the discounted price), in ``currency``.
    cash: float | None = None
    #: ``CNY`` or ``USD``, when Kling said.
    currency: str | None = None
    #: The pack the units came from: ``video``, ``image``, ``audio``.
    package_type: str | None = None
    #: The undiscounted price of the cash charge.
    list_price: float | None = None
    #: ``balance`` or ``test_balance``.
    cash_type: str | None = None

    @property
    def is_empty(self) -> bool:
        """True when Kling named no charge at all."""
        return self.units is None and self.cash is None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One task as Kling reported it once, in klingmon's words.

    Every wire adapter in ``klingmon.api`` turns what it parses (a query, a list
    page, a create's answer, a callback) into this; the store and the engine never
    see a wire model.
    """

    task_id: str
    #: Kling's status in our words; None for a status nobody documented.
    status: TaskStatus | None
    #: The status as Kling spelled it (for messages and drift events).
    raw_status: str
    message: str = ""
    external_task_id: str | None = None
    #: Kling's epoch milliseconds, as sent (the store bounds them).
    created_ms: int | None = None
    updated_ms: int | None = None
    #: The result in the stored shape (see ``RESULT_KINDS``); None when there is none.
    result: dict[str, Any] | None = None
    #: Units Kling charged, when it said (the same as ``cost.units``).
    units: float | None = None
    #: The body as Kling sent it, JSON-ready, unknown fields kept (for events).
    wire: dict[str, Any] = field(default_factory=dict)
    #: Everything Kling charged, units and cash; None when it said nothing.
    cost: Cost | None = None

    @property
    def urls(self) -> list[str]:
        """Every result file's URL, in the order of ``RESULT_KINDS``."""
        result = self.result or {}
        return [
            item["url"]
            for key in RESULT_KINDS
            for item in result.get(key) or []
            if isinstance(item, dict) and item.get("url")
        ]
