"""Plain, frozen values that cross the store's boundary.

The engine never sees SQLAlchemy rows: it gets these, so that the store can change
its queries without the engine noticing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from klingmon.domain import Cost, Snapshot, TaskStatus

__all__ = [
    "BatchRow",
    "Change",
    "EventRow",
    "NewTask",
    "Observation",
    "OutboxItem",
    "Report",
    "TaskRef",
    "TaskRow",
]


@dataclass(frozen=True, slots=True)
class NewTask:
    """One task to store; ``task`` set means adopting a task Kling already holds."""

    endpoint: str
    body: dict[str, Any]
    prompt: str | None = None
    model_name: str | None = None
    mode: str | None = None
    duration: str | None = None
    deadline_ms: int | None = None
    retry_of: int | None = None
    external_task_id: str | None = None
    task: Snapshot | None = None
    #: The units its quote expects (reserved when it is sent); None: unknown.
    quoted_units: float | None = None
    #: Its endpoint and canonical body, hashed (see ``request_hash``).
    request_hash: str | None = None
    #: A repeat of this succeeded task: stored ``cancelled``, linked, never sent.
    repeat_of: int | None = None
    #: The account an adopted task is on (None: the batch's accounts decide).
    account: str | None = None


@dataclass(frozen=True, slots=True)
class BatchRow:
    id: int
    name: str
    created_ms: int
    defaults: dict[str, Any]
    #: Higher is sent first (see ``klingmon.policy.level_order``).
    priority: int = 0
    #: When a task of the batch was last claimed for sending (None: never).
    served_ms: int | None = None
    #: ``awaiting_approval`` or ``paused_budget`` (nothing is sent); None: it runs.
    state: str | None = None
    #: The batch's cap in units (reserved plus charged); None: no cap.
    max_units: float | None = None
    #: The quote it was stored with (``Quote.to_json()``), when it was quoted.
    quote: dict[str, Any] | None = None
    #: The accounts its tasks may be sent on; None: the default account alone.
    accounts: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class TaskRow:
    """Every column of one task; times in epoch ms."""

    id: int
    batch_id: int
    seq: int
    endpoint: str
    body: dict[str, Any]
    prompt: str | None
    model_name: str | None
    mode: str | None
    duration: str | None
    external_task_id: str
    task_id: str | None
    status: TaskStatus
    status_msg: str | None
    kling_created_ms: int | None
    kling_updated_ms: int | None
    created_ms: int
    submitted_ms: int | None
    processing_ms: int | None
    finished_ms: int | None
    phase_ms: int
    next_poll_ms: int | None
    lease_owner: str | None
    lease_until_ms: int | None
    submit_attempts: int
    polls: int
    result: dict[str, Any] | None
    units: float | None
    watch_timeout: bool
    stuck: bool
    deadline_ms: int | None
    retry_of: int | None
    last_error: str | None
    learned_via: str | None
    #: Everything Kling charged (``units`` is its first part); None until it said.
    cost: Cost | None = None
    #: The spend ledger: the quote's units, the state, what counts against caps.
    quoted_units: float | None = None
    spend: str | None = None
    spend_units: float | None = None
    request_hash: str | None = None
    #: The succeeded task this one repeats (it was not sent).
    repeat_of: int | None = None
    #: Its concurrency pool (:attr:`klingmon.policy.PoolKey.label`) and the slots
    #: it holds there from submit until it ends.
    pool: str = "legacy"
    slots: int = 1
    #: The account it is sent on; None while a batch of several accounts has not
    #: placed it yet (fixed when it is claimed, never changed after).
    account: str | None = "default"

    @property
    def key(self) -> tuple[str, str, str, str]:
        """The duration-statistics key: (endpoint, model, mode, duration)."""
        return (
            self.endpoint,
            self.model_name or "",
            self.mode or "",
            self.duration or "",
        )


@dataclass(frozen=True, slots=True)
class TaskRef:
    """What routing a callback, or matching a list page, needs of a task: a few
    plain columns, nothing to decode."""

    id: int
    external_task_id: str
    task_id: str | None
    endpoint: str
    status: TaskStatus
    next_poll_ms: int | None
    kling_updated_ms: int | None
    #: The account it was sent on.
    account: str = "default"


@dataclass(frozen=True, slots=True)
class EventRow:
    id: int
    task_id: int
    batch_id: int
    at_ms: int
    source: str
    kind: str
    old_status: TaskStatus | None
    new_status: TaskStatus | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One pending delivery; ``event.id`` is the idempotency key."""

    id: int
    event: EventRow
    attempts: int


@dataclass(frozen=True, slots=True)
class Observation:
    """What one source saw of one task (``task_id`` is the local id)."""

    task_id: int
    task: Snapshot
    source: str
    observed_ms: int
    #: A callback the receiver trusts (valid signature, or verification turned off):
    #: its result files are owed like a poll's. Unconfirmed callbacks owe nothing.
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class Change:
    """A status change that was applied; ``task`` is the row after it."""

    task: TaskRow
    old_status: TaskStatus
    new_status: TaskStatus
    event_id: int


@dataclass(frozen=True, slots=True)
class AccountFigures:
    """One account's share of a report."""

    tasks: int
    succeeded: int
    units: float


@dataclass(frozen=True, slots=True)
class Report:
    """A batch's (or the whole store's) figures; durations in seconds."""

    batch_id: int | None
    total: int
    by_status: dict[TaskStatus, int]
    queue_p50_s: float | None
    queue_p95_s: float | None
    processing_p50_s: float | None
    processing_p95_s: float | None
    failures: dict[str, int]
    units: float
    stuck: int
    watch_timeout: int
    learned_via: dict[str, int]
    #: API requests by kind (create, get, list) for this batch.
    requests: dict[str, int] = field(default_factory=dict)
    requests_per_task: float | None = None
    #: Every counter of the batch (requests, error codes ...), as bumped.
    counters: dict[str, int] = field(default_factory=dict)
    #: Result files by download status (pending, done, failed ...).
    downloads: dict[str, int] = field(default_factory=dict)
    #: When Kling deletes the first result that is not downloaded yet (epoch ms).
    first_owed_expiry_ms: int | None = None
    #: Status changes by where they came from (``callback``, ``poll``, ``sweep`` ...);
    #: ``callback_hint`` counts terminal callbacks that a poll then confirmed.
    statuses_via: dict[str, int] = field(default_factory=dict)
    #: Balance Kling deducted for the finished tasks, by currency (``""`` when it
    #: named none, as legacy answers do); ``units`` is what the packs gave.
    cash: dict[str, float] = field(default_factory=dict)
    #: Per account the tasks were sent on (``unplaced``: not sent yet, of a batch
    #: of several): tasks, succeeded ones and the units they were charged.
    accounts: dict[str, AccountFigures] = field(default_factory=dict)
