"""The durable store: batches, tasks, events and the outbox, on SQLite or PostgreSQL."""

from __future__ import annotations

from klingmon.store._cancel import Cancellation
from klingmon.store._downloads import DOWNLOAD_STATES, RETENTION_MS, DownloadRow
from klingmon.store._fleet import WorkerRow
from klingmon.store._flow import Notice, RecordedChange
from klingmon.store._report import REQUEST_KINDS, REQUEST_PREFIX
from klingmon.store._retry import retry_batch
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
from klingmon.store._store import OUTBOX_KINDS, Store
from klingmon.store._views import BatchSummary

__all__ = [
    "DOWNLOAD_STATES",
    "OUTBOX_KINDS",
    "REQUEST_KINDS",
    "REQUEST_PREFIX",
    "RETENTION_MS",
    "BatchRow",
    "BatchSummary",
    "Cancellation",
    "Change",
    "DownloadRow",
    "EventRow",
    "NewTask",
    "Notice",
    "Observation",
    "OutboxItem",
    "RecordedChange",
    "Report",
    "Store",
    "TaskRef",
    "TaskRow",
    "WorkerRow",
    "retry_batch",
]
