"""The tables, declared once for SQLite and PostgreSQL.

Alembic's ``versions/`` holds the frozen history; a contract test compares the two so
that a column added here without a migration fails loudly. Times are epoch
milliseconds in ``BIGINT`` columns; statuses are :class:`TaskStatus` strings.
"""

from __future__ import annotations

import sqlalchemy as sa

from klingmon.domain import TaskStatus

__all__ = [
    "DURATION_INDEXES",
    "NAMING",
    "QUEUE_MS",
    "RUN_MS",
    "WATCH_COLUMNS",
    "batches",
    "callback_flow",
    "counters",
    "downloads",
    "duration_stats",
    "events",
    "locks",
    "meta",
    "metadata",
    "outbox",
    "price_stats",
    "tasks",
    "webhook_deliveries",
    "workers",
]

#: Deterministic constraint names, so that migrations can name them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)

# SQLite only autoincrements an ``INTEGER PRIMARY KEY``; PostgreSQL gets 64-bit ids.
_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_Ms = sa.BigInteger

batches = sa.Table(
    "batches",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_ms", _Ms, nullable=False),
    sa.Column("defaults", sa.JSON, nullable=False),
    # Higher goes first (migration 0009); ``served_ms``: when a task of the batch was
    # last claimed for sending, the start of its priority's wait (policy._priority).
    sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
    sa.Column("served_ms", _Ms),
    # Spend control (migration 0008): ``awaiting_approval`` or ``paused_budget``
    # while nothing of it may be sent (None: it runs), its cap in units, its quote.
    sa.Column("state", sa.String(24)),
    sa.Column("max_units", sa.Float),
    sa.Column("quote", sa.JSON),
    # The accounts its tasks may be sent on (migration 0011; None: the default).
    sa.Column("accounts", sa.JSON),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("batch_id", _Id, sa.ForeignKey("batches.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("endpoint", sa.String(200), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("prompt", sa.Text),
    sa.Column("model_name", sa.String(100)),
    sa.Column("mode", sa.String(50)),
    sa.Column("duration", sa.String(20)),
    sa.Column("external_task_id", sa.String(200), nullable=False, unique=True),
    sa.Column("task_id", sa.String(200), index=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_msg", sa.Text),
    sa.Column("kling_created_ms", _Ms),
    sa.Column("kling_updated_ms", _Ms),
    sa.Column("created_ms", _Ms, nullable=False),
    sa.Column("submitted_ms", _Ms),
    sa.Column("processing_ms", _Ms),
    sa.Column("finished_ms", _Ms),
    sa.Column("phase_ms", _Ms, nullable=False),
    sa.Column("next_poll_ms", _Ms, index=True),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_until_ms", _Ms),
    sa.Column("submit_attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("polls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("result", sa.JSON),
    sa.Column("units", sa.Float),
    # The rest of the task's cost record (migration 0007); ``units`` is its first part.
    sa.Column("cash", sa.Float),
    sa.Column("currency", sa.String(8)),
    sa.Column("package_type", sa.String(16)),
    sa.Column("list_price", sa.Float),
    sa.Column("cash_type", sa.String(16)),
    sa.Column("watch_timeout", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("stuck", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("deadline_ms", _Ms),
    sa.Column("retry_of", _Id),
    sa.Column("last_error", sa.Text),
    sa.Column("learned_via", sa.String(16)),
    # The spend ledger (migration 0008): the quote's units, the state (reserved,
    # charged, released, undetermined), the units counting against the caps, and
    # when it was reserved (the daily and monthly caps count from it).
    sa.Column("quoted_units", sa.Float),
    sa.Column("spend", sa.String(16)),
    sa.Column("spend_units", sa.Float),
    sa.Column("reserved_ms", _Ms),
    # The request's endpoint and canonical body, hashed: a repeat of a success is
    # found before it is paid again (``repeat_of``: the success it repeats).
    sa.Column("request_hash", sa.String(64)),
    sa.Column("repeat_of", _Id),
    # Its concurrency pool and the slots it holds there (0010).
    sa.Column("pool", sa.String(200), nullable=False, server_default="legacy"),
    sa.Column("slots", sa.Integer, nullable=False, server_default="1"),
    sa.Index("ix_tasks_status_pool", "status", "pool", "slots"),
    # The account it is (or will be) sent on (0011): fixed when it is claimed for
    # its create and never changed; None while a batch of several waits to place it.
    sa.Column("account", sa.String(40), server_default="default"),
    sa.Index("ix_tasks_reserved_ms", "reserved_ms"),
    sa.Index("ix_tasks_request_hash", "request_hash"),
    sa.Index("ix_tasks_batch_spend", "batch_id", "spend"),
    sa.Index("ix_tasks_status_next_poll", "status", "next_poll_ms"),
    # The submitter's pick (oldest queued first) and slot count (queued tasks leased
    # to a sender) without walking the queued backlog.
    sa.Index("ix_tasks_status_id", "status", "id"),
    # A waiting batch's first queued tasks, when priorities differ (migration 0009).
    sa.Index("ix_tasks_status_batch_id", "status", "batch_id", "id"),
    sa.Index(
        "ix_tasks_leased",
        "status",
        "lease_until_ms",
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
    ),
    # Every column the report counts by: its grouped query reads only this index.
    sa.Index(
        "ix_tasks_batch_report",
        "batch_id",
        "status",
        "learned_via",
        "stuck",
        "watch_timeout",
        "units",
    ),
)

#: How long a task waited here before Kling took it (None until submitted).
QUEUE_MS = tasks.c.submitted_ms - tasks.c.created_ms
#: How long Kling worked on a submitted task that ended there (None otherwise): from
#: ``processing_ms``, or ``submitted_ms`` when processing was never seen, to the end.
RUN_MS = sa.case(
    (
        sa.and_(
            tasks.c.submitted_ms.is_not(None),
            tasks.c.status.in_((TaskStatus.SUCCEED.value, TaskStatus.FAILED.value)),
            tasks.c.finished_ms.is_not(None),
        ),
        tasks.c.finished_ms
        - sa.func.coalesce(tasks.c.processing_ms, tasks.c.submitted_ms),
    )
)
#: SQLite only (migration 0004): each duration in order, then ``batch_id``, so that a
#: percentile is an index walk (PostgreSQL has ``percentile_cont``). Not declared on
#: ``tasks``: SQLite cannot reflect expression indexes, so autogenerate could not
#: compare them, and a migration that copies ``tasks`` (batch mode) must make them
#: again. The report names them in ``INDEXED BY`` and must spell each expression as
#: its index does (a contract test checks that no query sorts).
DURATION_INDEXES = {"ix_tasks_queue_ms": QUEUE_MS, "ix_tasks_run_ms": RUN_MS}

#: Every column of ``tasks`` but the JSON ones: watching a task needs neither its
#: ``body`` nor its ``result``, and decoding them is most of the cost of reading
#: hundreds of rows a round.
WATCH_COLUMNS = tuple(c for c in tasks.c if c.name not in ("body", "result"))


events = sa.Table(
    "events",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("task_id", _Id, sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("batch_id", _Id, nullable=False),
    sa.Column("at_ms", _Ms, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("old_status", sa.String(16)),
    sa.Column("new_status", sa.String(16)),
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_events_task", "task_id", "id"),
    sa.Index("ix_events_batch", "batch_id", "id"),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("event_id", _Id, sa.ForeignKey("events.id"), nullable=False),
    sa.Column("due_ms", _Ms, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delivered_ms", _Ms),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_until_ms", _Ms),
    sa.Column("last_error", sa.Text),
    sa.Index("ix_outbox_pending", "delivered_ms", "due_ms"),
)

duration_stats = sa.Table(
    "duration_stats",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("blob", sa.Text, nullable=False),
)

#: Learned prices per price key (a JSON list): sums, added to in the transaction
#: that records a task's charge, so every writer teaches the same figures.
price_stats = sa.Table(
    "price_stats",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("count", sa.Float, nullable=False, server_default="0"),
    sa.Column("units", sa.Float, nullable=False, server_default="0"),
    sa.Column("cash_count", sa.Float, nullable=False, server_default="0"),
    sa.Column("cash", sa.Float, nullable=False, server_default="0"),
    sa.Column("currency", sa.String(8)),
)

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    # 0 stands for "all batches": a NULL cannot take part in a primary key.
    sa.Column("batch_id", _Id, primary_key=True, server_default="0"),
    sa.Column("value", sa.BigInteger, nullable=False, server_default="0"),
)

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

downloads = sa.Table(
    "downloads",
    metadata,
    sa.Column("id", _Id, primary_key=True, autoincrement=True),
    sa.Column("task_id", _Id, sa.ForeignKey("tasks.id"), nullable=False),
    sa.Column("batch_id", _Id, nullable=False),
    # "video" or "image", and the file's index among the task's results of that kind.
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("idx", sa.Integer, nullable=False),
    sa.Column("url", sa.Text, nullable=False),
    # Where the file lands: a path under the destination, or an fsspec URL.
    sa.Column("dest", sa.Text),
    # pending | downloading | done | failed | refused | expired
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("size", sa.BigInteger),
    sa.Column("sha256", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    # Kling deletes results 30 days after the task was created.
    sa.Column("expires_ms", _Ms),
    sa.Column("next_try_ms", _Ms),
    sa.Column("lease_owner", sa.String(200)),
    sa.Column("lease_until_ms", _Ms),
    sa.Column("created_ms", _Ms, nullable=False),
    sa.Column("done_ms", _Ms),
    sa.UniqueConstraint("task_id", "kind", "idx", name="uq_downloads_file"),
    sa.Index("ix_downloads_status_expiry", "status", "expires_ms"),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    # Standard Webhooks' ``webhook-id``: a delivery seen twice is applied once.
    sa.Column("webhook_id", sa.String(200), primary_key=True),
    sa.Column("received_ms", _Ms, nullable=False),
    sa.Column("task_id", _Id),
)

workers = sa.Table(
    "workers",
    metadata,
    # The engine's lease owner: host:pid:random.
    sa.Column("owner", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_ms", _Ms, nullable=False),
    sa.Column("heartbeat_ms", _Ms, nullable=False),
    # Set on a clean exit; a worker without it and a stale heartbeat died.
    sa.Column("stopped_ms", _Ms),
    sa.Column("info", sa.JSON, nullable=False),
)

locks = sa.Table(
    "locks",
    metadata,
    # A named lease: the one worker that sweeps an endpoint's list pages, say.
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("until_ms", _Ms, nullable=False),
)

callback_flow = sa.Table(
    "callback_flow",
    metadata,
    # Per task endpoint: when a receiver last took in a callback (epoch ms), so an
    # engine in any process knows its polls may fall back to a safety net.
    sa.Column("endpoint", sa.String(200), primary_key=True),
    sa.Column("last_ms", _Ms, nullable=False),
)
