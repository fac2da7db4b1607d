"""The repositories' interfaces, for consumers to type against what they use.

Each repository of :class:`~klingmon.store.Store` is described here by a
:class:`typing.Protocol` of its public methods (the docstrings live with the
implementations). A part of the engine that only claims and schedules polls takes a
:class:`WatchListPort`, not the whole store; a test can hand it anything that fits.
``tests/unit/store/test_store_surface.py`` keeps each port and its class in step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, Protocol

from klingmon.policy import AGING_MS

if TYPE_CHECKING:
    import contextlib
    from collections.abc import Callable, Collection, Mapping, Sequence

    import sqlalchemy as sa

    from klingmon.domain import BatchState, Snapshot, TaskStatus
    from klingmon.policy import Learned, PriceKey
    from klingmon.store._cancel import Cancellation
    from klingmon.store._downloads import DownloadRow
    from klingmon.store._fleet import WorkerRow
    from klingmon.store._flow import Notice, RecordedChange
    from klingmon.store._pools import PoolFigure, PoolUse
    from klingmon.store._reports import BatchSummary
    from klingmon.store._rows import (
        BatchRow,
        Change,
        EventRow,
        NewTask,
        Observation,
        OutboxItem,
        Report,
        TaskRef,
        TaskRow,
    )
    from klingmon.store._spend import SpendCaps, SpendSummary

__all__ = [
    "DownloadQueuePort",
    "FleetPort",
    "MetaPort",
    "OutboxPort",
    "ReportsPort",
    "SpendingPort",
    "TaskQueuePort",
    "Transactional",
    "WatchListPort",
]


class Transactional(Protocol):
    """Something that holds one transaction every store call of a thread joins."""

    def transaction(self) -> contextlib.AbstractContextManager[sa.Connection]: ...


class TaskQueuePort(Protocol):
    """What the task queue offers: batches, lookups, claims, submission steps."""

    def create_batch(
        self,
        name: str | None,
        tasks: Sequence[NewTask],
        now_ms: int,
        *,
        defaults: Mapping[str, Any] | None = None,
        priority: int = 0,
        state: str | None = None,
        max_units: float | None = None,
        quote: Mapping[str, Any] | None = None,
        accounts: Sequence[str] | None = None,
    ) -> BatchRow: ...

    def batches(self) -> list[BatchRow]: ...

    def batch(self, ref: str | int) -> BatchRow | None: ...

    def task(self, ref: int | str) -> TaskRow | None: ...

    def tasks(
        self,
        batch_id: int | None = None,
        statuses: Collection[TaskStatus] | None = None,
    ) -> list[TaskRow]: ...

    def task_ids_of_batch(self, batch_id: int) -> list[int]: ...

    def count_by_status(
        self,
        batch_id: int | None = None,
        statuses: Collection[TaskStatus] | None = None,
    ) -> dict[TaskStatus, int]: ...

    def succeeded_with(self, hashes: Collection[str]) -> dict[str, int]: ...

    def has_tasks(
        self,
        statuses: Collection[TaskStatus],
        batch_id: int | None = None,
        *,
        skip_held: bool = False,
    ) -> bool: ...

    def match_tasks(
        self, refs: Sequence[tuple[str | None, str | None]]
    ) -> list[TaskRef | None]: ...

    def claim_queued(
        self, owner: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[TaskRow]: ...

    def claim_submissions(
        self,
        owner: str,
        now_ms: int,
        lease_ms: int,
        *,
        slots: int,
        pools: Mapping[str, int] | None = None,
        pooled: bool = True,
        batch_id: int | None = None,
        aging_ms: int = AGING_MS,
        caps: SpendCaps | None = None,
        account_caps: Mapping[str, SpendCaps] | None = None,
    ) -> list[TaskRow]: ...

    def pool_use(self, now_ms: int) -> list[PoolUse]: ...

    def set_priority(
        self, batch_id: int, priority: int, now_ms: int, *, by: str = "library"
    ) -> tuple[int, int]: ...

    def mark_submitting(self, task_id: int, now_ms: int) -> TaskRow: ...

    def mark_submitted(
        self, task_id: int, task: Snapshot, now_ms: int, next_poll_ms: int
    ) -> Change | None: ...

    def requeue(
        self, task_id: int, now_ms: int, not_before_ms: int, reason: str
    ) -> None: ...

    def reject(
        self, task_id: int, now_ms: int, message: str, code: int | None
    ) -> Change: ...

    def cancel_tasks(
        self, ids: Sequence[int], now_ms: int, reason: str = "cancelled by the user"
    ) -> Cancellation: ...

    def lock_tasks(self, ids: Sequence[int]) -> None: ...


class WatchListPort(Protocol):
    """What the watch list offers: due polls, what they saw, flags and notes."""

    def claim_due(
        self,
        owner: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        endpoint: str | None = None,
    ) -> list[TaskRow]: ...

    def due_endpoints(self, now_ms: int) -> list[str]: ...

    def active(
        self, endpoint: str | None = None, *, ids: Collection[int] | None = None
    ) -> list[TaskRow]: ...

    def watched(self, endpoint: str) -> list[TaskRef]: ...

    def next_due_ms(
        self, *, include_queued: bool = True, queued_batch_id: int | None = None
    ) -> int | None: ...

    def apply(
        self, observations: Sequence[Observation], now_ms: int
    ) -> list[Change]: ...

    def schedule(self, items: Sequence[tuple[int, int]]) -> None: ...

    def pull_in(self, due_ms: int, now_ms: int) -> int: ...

    def flag(
        self,
        task_id: int,
        kind: Literal["stuck", "watch_timeout"],
        now_ms: int,
        payload: Mapping[str, Any],
    ) -> EventRow | None: ...

    def note(
        self,
        task_id: int,
        now_ms: int,
        source: str,
        kind: str,
        payload: Mapping[str, Any],
    ) -> int: ...


class OutboxPort(Protocol):
    """What the outbox offers: events, their delivery, webhook ids seen."""

    def events(
        self,
        task_id: int | None = None,
        batch_id: int | None = None,
        since_id: int = 0,
        limit: int | None = None,
    ) -> list[EventRow]: ...

    def claim_outbox(
        self, owner: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[OutboxItem]: ...

    def delivered(self, ids: Sequence[int], now_ms: int) -> None: ...

    def failed(
        self, outbox_id: int, now_ms: int, error: str, retry_at_ms: int
    ) -> None: ...

    def outbox_backlog(self) -> int: ...

    def record_delivery(
        self, webhook_id: str, task_id: int | None, now_ms: int
    ) -> bool: ...


class DownloadQueuePort(Protocol):
    """What the download queue offers: owed files, claims, outcomes, counts."""

    def confirm_downloads(self, task_id: int, now_ms: int) -> int: ...

    def ensure_downloads(
        self,
        now_ms: int,
        batch_id: int | None = None,
        *,
        watermark: bool = False,
        task_id: int | None = None,
    ) -> int: ...

    def claim_downloads(
        self,
        owner: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        *,
        batch_id: int | None = None,
        expires_before_ms: int | None = None,
        retry_failed: bool = False,
    ) -> list[DownloadRow]: ...

    def set_download_dest(self, download_id: int, dest: str) -> str: ...

    def download_done(
        self, download_id: int, now_ms: int, *, size: int, sha256: str
    ) -> None: ...

    def download_failed(
        self,
        download_id: int,
        error: str,
        *,
        status: str | None = None,
        next_try_ms: int | None = None,
    ) -> None: ...

    def requeue_downloads(self, ids: Sequence[int]) -> None: ...

    def download_row(self, download_id: int) -> DownloadRow | None: ...

    def download_rows(
        self,
        batch_id: int | None = None,
        statuses: Collection[str] | None = None,
        task_id: int | None = None,
    ) -> list[DownloadRow]: ...

    def download_counts(
        self, batch_id: int | None = None, *, now_ms: int = 0, within_ms: int = 0
    ) -> dict[str, int]: ...

    def next_download_ms(self, batch_id: int | None = None) -> int | None: ...

    def files_owed(self, batch_id: int | None = None) -> int: ...


class FleetPort(Protocol):
    """What the fleet offers: heartbeats, lock leases, wake-ups, task leases."""

    def heartbeat(
        self, owner: str, now_ms: int, info: Mapping[str, Any] | None = None
    ) -> None: ...

    def worker_stopped(self, owner: str, now_ms: int) -> None: ...

    def workers(
        self, now_ms: int, *, alive_within_ms: int = 30_000
    ) -> list[WorkerRow]: ...

    def acquire_lock(self, name: str, owner: str, now_ms: int, ttl_ms: int) -> bool: ...

    def notify(self, *notices: Notice, news: bool = True) -> None: ...

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]: ...

    def release(self, owner: str) -> None: ...

    def lease_counts(self, now_ms: int) -> dict[str, int]: ...

    def lease_owners(self) -> set[str]: ...

    def live_lease_owners(self, now_ms: int) -> set[str]: ...


class ReportsPort(Protocol):
    """What reports offer: figures, summaries, slot counts, counters."""

    def report(self, batch_id: int | None = None) -> Report: ...

    def batch_summaries(self) -> dict[int, BatchSummary]: ...

    def change_mark(
        self, *, batch_id: int | None = None, task_id: int | None = None
    ) -> tuple[int, ...]: ...

    def slots_in_use(self) -> int: ...

    def pool_figures(
        self, now_ms: int, alive_infos: Sequence[Mapping[str, Any]]
    ) -> list[PoolFigure]: ...

    def slots_by_batch(self) -> dict[int, int]: ...

    def processing_seconds(self, batch_id: int) -> list[float]: ...

    def counters(self, batch_id: int | None = None) -> dict[str, int]: ...

    def counter_totals(self) -> dict[str, int]: ...

    def bump(self, counts: Mapping[str, int], batch_id: int | None = None) -> None: ...


class MetaPort(Protocol):
    """What meta offers: key/value facts, duration statistics, revisions."""

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...

    def setdefault(self, key: str, value: str) -> str: ...

    def load_stats(self) -> dict[str, str]: ...

    def save_stats(self, blobs: Mapping[str, str]) -> None: ...

    def revisions(self) -> tuple[str | None, str | None]: ...


class SpendingPort(Protocol):
    """What spending offers: batch holds and caps, the ledger, learned prices."""

    def release(
        self,
        batch_id: int,
        *,
        state: BatchState | None = None,
        max_units: float | None = None,
    ) -> bool: ...

    def set_cap(self, batch_id: int, max_units: float | None) -> None: ...

    def summary(self, batch_id: int | None = None) -> SpendSummary: ...

    def by_batch(self) -> dict[int, tuple[float, float, float]]: ...

    def learned_prices(self) -> dict[PriceKey, Learned]: ...


class CallbackFlowPort(Protocol):
    """What :class:`~klingmon.store._flow.CallbackFlow` offers."""

    @property
    def in_memory(self) -> bool: ...
    def listen_here(self, fn: Callable[[Notice], None]) -> Callable[[], None]: ...
    def note_callbacks(self, endpoints: Collection[str], now_ms: int) -> None: ...
    def callbacks_last_ms(self, endpoint: str) -> int | None: ...
    def last_event_id(self) -> int: ...
    def changes_since(self, mark: int, limit: int = 1000) -> list[RecordedChange]: ...
