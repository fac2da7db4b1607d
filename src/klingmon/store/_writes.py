"""The write helpers behind :class:`Store`: task values, events, one observation.

Each runs inside the caller's transaction; none commits. Every status change goes
through :meth:`Pending.change`, which writes what the change obliges in the same
transaction: its event (with an outbox row when hooks must hear of it) and, for a
success vouched for by Kling, a download row per result file. So no path that records
a status (a poll, a callback, a create's answer, a lookup after a lost answer, an
adopted task) can leave a success whose files nobody owes.
"""

from __future__ import annotations

import functools
import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import (
    ACTIVE,
    OUTBOX_KINDS,
    POLL_SOURCES,
    TERMINAL,
    WAITING,
    TaskStatus,
)
from klingmon.errors import StoreError
from klingmon.policy import (
    DEFAULT_ACCOUNT,
    Transition,
    Verdict,
    consequences,
    judge,
    pool_of,
    settle,
    slots_of,
    spread_pool,
)
from klingmon.store._convert import (
    COST_COLUMNS,
    kling_ms,
    observed_values,
    status_values,
    wire,
)
from klingmon.store._downloads import queue_files
from klingmon.store._prices import PriceSamples
from klingmon.store._rows import BatchRow
from klingmon.store._schema import batches, events, outbox, tasks

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from klingmon.store._rows import NewTask, Observation

__all__ = [
    "ACTIVE_STATES",
    "OUTBOX_KINDS",
    "QUEUED_STATES",
    "Pending",
    "apply_one",
    "batch_row",
    "change_status",
    "changes_nothing",
    "free_name",
    "lock_task",
    "new_task_values",
    "record_event",
    "update_task",
]

#: Event kinds that hooks and forwarded webhooks must hear about.
#: Status strings of tasks waiting to be sent, and of tasks Kling holds.
QUEUED_STATES = WAITING
ACTIVE_STATES = tuple(sorted(ACTIVE))


def batch_row(m: Mapping[Any, Any]) -> BatchRow:
    quote = m.get("quote")
    return BatchRow(
        m["id"],
        m["name"],
        m["created_ms"],
        dict(m["defaults"] or {}),
        int(m["priority"]),
        m["served_ms"],
        state=m.get("state"),
        max_units=m.get("max_units"),
        quote=None if quote is None else dict(quote),
        accounts=tuple(m["accounts"]) if m.get("accounts") else None,
    )


def free_name(conn: sa.Connection, now_ms: int) -> str:
    base = datetime.fromtimestamp(now_ms / 1000, UTC).strftime("b-%Y%m%d-%H%M%S")
    taken = set(
        conn.scalars(sa.select(batches.c.name).where(batches.c.name.startswith(base)))
    )
    name, n = base, 1
    while name in taken:
        n += 1
        name = f"{base}-{n}"
    return name


def new_task_values(
    batch_id: int,
    seq: int,
    new: NewTask,
    now_ms: int,
    accounts: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A new task's row; its pool is its account's, or the waiting room of the
    batch's ``accounts`` when they are several (the claim places it)."""
    names = [new.account] if new.account else list(accounts or [DEFAULT_ACCOUNT])
    key = pool_of(new.endpoint, new.body)
    external = new.external_task_id or f"km-{batch_id}-{seq}-{secrets.token_hex(4)}"
    values: dict[str, Any] = {
        "batch_id": batch_id,
        "seq": seq,
        "endpoint": new.endpoint,
        "body": new.body,
        "prompt": new.prompt,
        "model_name": new.model_name,
        "mode": new.mode,
        "duration": new.duration,
        "external_task_id": external,
        "task_id": None,
        "status": TaskStatus.QUEUED.value,
        "status_msg": None,
        "kling_created_ms": None,
        "kling_updated_ms": None,
        "created_ms": now_ms,
        "submitted_ms": None,
        "processing_ms": None,
        "finished_ms": None,
        "phase_ms": now_ms,
        "next_poll_ms": None,
        "submit_attempts": 0,
        "polls": 0,
        "result": None,
        **dict.fromkeys(COST_COLUMNS),
        "watch_timeout": False,
        "stuck": False,
        "deadline_ms": new.deadline_ms,
        "retry_of": new.retry_of,
        "learned_via": None,
        "quoted_units": new.quoted_units,
        "spend": None,
        "spend_units": None,
        "reserved_ms": None,
        "request_hash": new.request_hash,
        "repeat_of": new.repeat_of,
        "pool": spread_pool(names, key),
        "account": names[0] if len(set(names)) == 1 else None,
        "slots": slots_of(new.endpoint, new.body),
    }
    if new.repeat_of is not None:
        # A repeat of a success: kept, linked, ended; never sent nor paid again.
        values |= {
            "status": TaskStatus.CANCELLED.value,
            "status_msg": f"a repeat of task {new.repeat_of}, which succeeded",
            "finished_ms": now_ms,
            "spend": "released",
            "spend_units": 0.0,
        }
    task = new.task
    if task is None:
        return values
    # Adopting a task Kling already holds: it starts where Kling says it is.
    status = task.status or TaskStatus.SUBMITTED
    values |= observed_values(task, now_ms)
    values["external_task_id"] = (
        new.external_task_id or task.external_task_id or external
    )
    values |= status_values(values, status, "local", now_ms)
    values["learned_via"] = "local"
    if status in ACTIVE:
        values["next_poll_ms"] = now_ms
    values.setdefault("result", None)
    for name in COST_COLUMNS:
        values.setdefault(name, None)
    values.setdefault("status_msg", None)
    values.pop("lease_owner", None)
    values.pop("lease_until_ms", None)
    return values


def lock_task(conn: sa.Connection, task_id: int) -> dict[str, Any]:
    m = (
        conn.execute(sa.select(tasks).where(tasks.c.id == task_id).with_for_update())
        .mappings()
        .first()
    )
    if m is None:
        raise StoreError(f"no task with local id {task_id}")
    return dict(m)


def add_polls(conn: sa.Connection, polled: Sequence[int]) -> None:
    """``polls += n`` for each id, n being how often it appears: one UPDATE per n."""
    for n, ids in _group_counts(polled).items():
        conn.execute(
            tasks.update().where(tasks.c.id.in_(ids)).values(polls=tasks.c.polls + n)
        )


def _group_counts(ids: Sequence[int]) -> dict[int, list[int]]:
    by_count: dict[int, list[int]] = {}
    for task_id, n in Counter(ids).items():
        by_count.setdefault(n, []).append(task_id)
    return by_count


def update_task(
    conn: sa.Connection, task_id: int, values: Mapping[str, Any]
) -> dict[str, Any]:
    """Write columns other than the status (see :func:`change_status` for that)."""
    if "status" in values:
        raise RuntimeError("a status is written with change_status or Pending.change")
    stmt = (
        tasks.update()
        .where(tasks.c.id == task_id)
        .values(dict(values))
        .returning(*tasks.c)
    )
    return dict(conn.execute(stmt).mappings().one())


def record_event(  # noqa: PLR0917 - one argument per events column
    conn: sa.Connection,
    row: Mapping[str, Any],
    now_ms: int,
    source: str,
    kind: str,
    old: TaskStatus | None,
    new: TaskStatus | None,
    payload: Mapping[str, Any],
) -> int:
    """Append one event (and its outbox row when hooks must hear of it)."""
    pending = Pending()
    pending.event(row, now_ms, source, kind, old, new, payload)
    return pending.flush(conn)[0]


def change_status(  # noqa: PLR0917 - Pending.change's arguments, for one task
    conn: sa.Connection,
    row: Mapping[str, Any],
    new: TaskStatus,
    now_ms: int,
    source: str,
    payload: Mapping[str, Any],
    *,
    old: TaskStatus | None,
    kind: str = "status",
    values: Mapping[str, Any] | None = None,
    trusted: bool = True,
) -> tuple[dict[str, Any], int]:
    """One task's status change, written now; the row after it and its event id."""
    pending = Pending()
    index = pending.change(
        row,
        new,
        now_ms,
        source,
        payload,
        old=old,
        kind=kind,
        values=values,
        trusted=trusted,
    )
    ids = pending.flush(conn)
    return dict(row) | pending.updates.get(row["id"], {}), ids[index]


def _event_values(  # noqa: PLR0917 - one argument per events column
    row: Mapping[str, Any],
    now_ms: int,
    source: str,
    kind: str,
    old: TaskStatus | None,
    new: TaskStatus | None,
    payload: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "task_id": row["id"],
        "batch_id": row["batch_id"],
        "at_ms": now_ms,
        "source": source,
        "kind": kind,
        "old_status": None if old is None else old.value,
        "new_status": None if new is None else new.value,
        "payload": dict(payload),
    }


class Pending:
    """The writes of one :meth:`Store.apply`, made together at its end.

    Events go in one multi-row INSERT, their outbox rows in one more, and the task
    updates in one executemany per set of changed columns: a few statements for a
    whole sweep or group of callbacks instead of three or four per observation.
    """

    __slots__ = ("events", "heard", "owed", "prices", "updates")

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        #: Indexes of the events hooks must hear of (an outbox row each).
        self.heard: set[int] = set()
        self.updates: dict[int, dict[str, Any]] = {}
        #: Succeeded tasks (the row as the change leaves it) whose files are owed.
        self.owed: dict[int, tuple[dict[str, Any], int]] = {}
        #: Charges of the successes, for the learned prices.
        self.prices = PriceSamples()

    def change(
        self,
        row: Mapping[str, Any],
        new: TaskStatus,
        now_ms: int,
        source: str,
        payload: Mapping[str, Any],
        *,
        old: TaskStatus | None,
        kind: str = "status",
        values: Mapping[str, Any] | None = None,
        trusted: bool = True,
    ) -> int:
        """Queue a status change and all it obliges; its event's index.

        ``row`` is the task before the change (or as just inserted, for an adopted
        task: ``old`` None), ``values`` any data columns that change with it. The
        event, its outbox row and the columns :func:`status_values` sets always
        go together; a ``succeed`` owes its files unless ``trusted`` is False (a
        callback nobody vouched for: its URLs must never be fetched).
        """
        merged = dict(values or {}) | status_values(row, new, source, now_ms)
        if new in TERMINAL:
            merged |= self._settled(row, merged, new, trusted=trusted)
        changed = {k: v for k, v in merged.items() if k not in row or row[k] != v}
        if changed:
            self.update(row["id"], changed)
        implied = consequences(
            Transition(old=old, new=new, source=source, trusted=trusted, kind=kind)
        )
        index = self.event(
            row, now_ms, source, kind, old, new, payload, heard=implied.heard
        )
        if implied.owes_files:
            self.owe(dict(row) | changed, now_ms)
        return index

    def _settled(
        self,
        row: Mapping[str, Any],
        merged: Mapping[str, Any],
        new: TaskStatus,
        *,
        trusted: bool,
    ) -> dict[str, Any]:
        """The spend ledger's columns for a task that ends; learn its price."""
        after = dict(row) | dict(merged)
        reserved = after.get("spend_units") if after.get("spend") else None
        spend, counted = settle(
            new, reserved, after.get("units"), after.get("cash"), trusted=trusted
        )
        if new is TaskStatus.SUCCEED and trusted and "endpoint" in row:
            self.prices.add(row, after)
        return {"spend": spend.value, "spend_units": counted}

    def owe(self, row: Mapping[str, Any], now_ms: int) -> None:
        """Owe the result files of ``row``, a succeeded task (idempotent)."""
        self.owed[row["id"]] = (dict(row), now_ms)

    def event(  # noqa: PLR0917 - one argument per events column, as record_event
        self,
        row: Mapping[str, Any],
        now_ms: int,
        source: str,
        kind: str,
        old: TaskStatus | None,
        new: TaskStatus | None,
        payload: Mapping[str, Any],
        *,
        heard: bool | None = None,
    ) -> int:
        """Queue an event; its index into the ids :meth:`flush` returns.

        ``heard``: whether hooks hear of it (an outbox row); by its kind when None.
        """
        self.events.append(_event_values(row, now_ms, source, kind, old, new, payload))
        if heard if heard is not None else kind in OUTBOX_KINDS:
            self.heard.add(len(self.events) - 1)
        return len(self.events) - 1

    def update(self, task_id: int, values: Mapping[str, Any]) -> None:
        self.updates.setdefault(task_id, {}).update(values)

    def flush(self, conn: sa.Connection) -> list[int]:
        """Write everything queued; the new event ids, in queueing order."""
        ids: list[int] = []
        if self.events:
            ids = _insert_events(conn, self.events)
            owed = [
                {"event_id": event_id, "due_ms": event["at_ms"], "attempts": 0}
                for i, event_id in enumerate(ids)
                if i in self.heard
                for event in (self.events[i],)
            ]
            if owed:
                conn.execute(outbox.insert(), owed)
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for task_id, values in self.updates.items():
            columns = tuple(sorted(values))
            params = {f"v_{c}": values[c] for c in columns}
            params["b_id"] = task_id
            by_columns.setdefault(columns, []).append(params)
        for columns, rows in by_columns.items():
            conn.execute(_update_columns(columns), rows)
        if self.owed:
            pg = conn.dialect.name == "postgresql"
            queue_files(conn, list(self.owed.values()), pg=pg)
        self.prices.flush(conn)
        return ids


_INSERT_EVENTS = events.insert().returning(events.c.id, sort_by_parameter_order=True)
_INSERT_EVENTS_ANY_ORDER = events.insert().returning(events.c.id)


def _insert_events(conn: sa.Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows``; their ids in the same order."""
    if conn.dialect.name != "sqlite":
        return list(conn.execute(_INSERT_EVENTS, rows).scalars())
    # SQLAlchemy orders RETURNING on SQLite only by sending one row at a time. One
    # multi-row INSERT instead: SQLite numbers the rows it inserts max(rowid) + 1,
    # in the order of the VALUES, under the write lock this transaction holds, so
    # the ids sorted are the rows' ids in order, however RETURNING lists them.
    return sorted(conn.execute(_INSERT_EVENTS_ANY_ORDER, rows).scalars())


@functools.lru_cache(maxsize=64)
def _update_columns(columns: tuple[str, ...]) -> sa.Update:
    """``UPDATE tasks SET <columns> WHERE id = :b_id``, built once per column set."""
    values: dict[str, Any] = {c: sa.bindparam(f"v_{c}") for c in columns}
    return tasks.update().where(tasks.c.id == sa.bindparam("b_id")).values(values)


def changes_nothing(stored: Mapping[str, Any], obs: Observation, now_ms: int) -> bool:
    """Whether :func:`apply_one` would only count ``obs`` as a poll (most polls of a
    running task): Kling says again what ``stored`` holds, its status, its time."""
    new = obs.task.status
    old = TaskStatus(stored["status"])
    if stored["task_id"] is None or new is None or new != old or old not in ACTIVE:
        return False
    updated = kling_ms(obs.task.updated_ms, now_ms)
    return judge(old, stored["kling_updated_ms"], new, updated) == Verdict.IGNORE


def apply_one(
    row: dict[str, Any],
    obs: Observation,
    now_ms: int,
    pending: Pending,
    polled: list[int],
) -> tuple[TaskStatus, TaskStatus, int] | None:
    """Judge one observation against ``row`` and queue what it changes.

    ``row`` is brought up to date in place, so a later observation of the same task
    is judged against this one. An observation that changes nothing but the poll
    count (most polls) is only noted in ``polled``, for one batched UPDATE by the
    caller. A status change comes back as (old, new, index of its event). A success
    seen again by a trusted source owes its files again (a no-op when they are).
    """
    task = obs.task
    old = TaskStatus(row["status"])
    trusted = obs.source != "callback" or obs.confirmed
    values: dict[str, Any] = {}
    if obs.source in POLL_SOURCES:
        values["polls"] = row["polls"] + 1
    if row["task_id"] is None:
        values["task_id"] = task.task_id
    new = task.status
    if new is None:
        marker = f"drift: unknown status {task.raw_status!r}"
        if row["last_error"] != marker:  # one loud event per new spelling, not per poll
            pending.event(row, now_ms, obs.source, "drift", old, None, wire(task))
            values["last_error"] = marker
    else:
        updated = kling_ms(task.updated_ms, now_ms)
        verdict = judge(old, row["kling_updated_ms"], new, updated)
        if verdict == Verdict.APPLY:
            values |= observed_values(task, now_ms)
            index = pending.change(
                row,
                new,
                now_ms,
                obs.source,
                wire(task),
                old=old,
                values=values,
                trusted=trusted,
            )
            row.update(pending.updates[row["id"]])
            return (old, new, index)
        if verdict == Verdict.REFRESH:
            values |= observed_values(task, now_ms)
        elif new != old:
            pending.event(row, now_ms, obs.source, "stale", old, new, wire(task))
        if trusted and old is TaskStatus.SUCCEED:
            pending.owe(row | values | {"result": task.result}, now_ms)
    if not values:
        return None
    if values.keys() == {"polls"}:
        polled.append(row["id"])
        row["polls"] = values["polls"]
        return None
    pending.update(row["id"], values)
    row.update(values)
    return None
