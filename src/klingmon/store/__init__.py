"""The durable store: batches, tasks, events and the outbox, on SQLite or PostgreSQL.

:class:`Store` holds one repository per aggregate (``store.tasks``, ``store.watch``,
``store.outbox``, ``store.downloads``, ``store.fleet``, ``store.reports``,
``store.meta``, ``store.flow``, ``store.spend``); type a consumer against the
``*Port`` protocol of what it uses.
"""

from __future__ import annotations

from klingmon.store._cancel import Cancellation
from klingmon.store._checkpoint import Checkpointer
from klingmon.store._dialect import WriterGate
from klingmon.store._downloads import (
    DOWNLOAD_STATES,
    RETENTION_MS,
    DownloadQueue,
    DownloadRow,
)
from klingmon.store._fleet import Fleet, WorkerRow
from klingmon.store._flow import CallbackFlow, Notice, RecordedChange
from klingmon.store._group import GroupCommit
from klingmon.store._meta import Meta
from klingmon.store._outbox import Outbox
from klingmon.store._pools import PoolFigure, PoolUse
from klingmon.store._ports import (
    CallbackFlowPort,
    DownloadQueuePort,
    FleetPort,
    MetaPort,
    OutboxPort,
    ReportsPort,
    SpendingPort,
    TaskQueuePort,
    Transactional,
    WatchListPort,
)
from klingmon.store._report import REQUEST_KINDS, REQUEST_PREFIX
from klingmon.store._reports import BatchSummary, Reports
from klingmon.store._retry import retry_batch
from klingmon.store._rows import (
    AccountFigures,
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
from klingmon.store._spend import SpendCaps, Spending, SpendSummary
from klingmon.store._store import OUTBOX_KINDS, Store, checkpoints, writer_gate
from klingmon.store._tasks import TaskQueue
from klingmon.store._watch import WatchList

__all__ = [
    "DOWNLOAD_STATES",
    "OUTBOX_KINDS",
    "REQUEST_KINDS",
    "REQUEST_PREFIX",
    "RETENTION_MS",
    "AccountFigures",
    "BatchRow",
    "BatchSummary",
    "CallbackFlow",
    "CallbackFlowPort",
    "Cancellation",
    "Change",
    "Checkpointer",
    "DownloadQueue",
    "DownloadQueuePort",
    "DownloadRow",
    "EventRow",
    "Fleet",
    "FleetPort",
    "GroupCommit",
    "Meta",
    "MetaPort",
    "NewTask",
    "Notice",
    "Observation",
    "Outbox",
    "OutboxItem",
    "OutboxPort",
    "PoolFigure",
    "PoolUse",
    "RecordedChange",
    "Report",
    "Reports",
    "ReportsPort",
    "SpendCaps",
    "SpendSummary",
    "Spending",
    "SpendingPort",
    "Store",
    "TaskQueue",
    "TaskQueuePort",
    "TaskRef",
    "TaskRow",
    "Transactional",
    "WatchList",
    "WatchListPort",
    "WorkerRow",
    "WriterGate",
    "checkpoints",
    "retry_batch",
    "writer_gate",
]
