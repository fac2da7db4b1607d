"""The write helpers behind :class:`Store`: task values, events, one observation.

Each runs inside the caller's transaction; none commits.
"""

from __future__ import annotations

import secrets
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.api._models import ACTIVE, TaskStatus, parse_status
from klingmon.errors import StoreError
from klingmon.policy._lifecycle import Verdict, judge
from klingmon.store._convert import (
    kling_ms,
    observed_values,
    status_values,
    task_row,
    wire,
)
from klingmon.store._rows import BatchRow, Change
from klingmon.store._schema import batches, events, outbox, tasks

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from klingmon.store._rows import NewTask, Observation

__all__ = [
    "ACTIVE_STATES",
    "OUTBOX_KINDS",
    "QUEUED_STATES",
    "apply_one",
    "batch_row",
    "free_name",
    "lock_task",
    "new_task_values",
    "record_event",
    "update_task",
]

#: Event kinds that hooks and forwarded webhooks must hear about.
OUTBOX_KINDS = frozenset({"status", "stuck", "watch_timeout", "rejected", "drift"})
_POLL_SOURCES = frozenset({"poll", "sweep"})
#: Status strings of tasks waiting to be sent, and of tasks Kling holds.
QUEUED_STATES = (TaskStatus.QUEUED.value, TaskStatus.SUBMITTING.value)
ACTIVE_STATES = tuple(sorted(s.value for s in ACTIVE))


def batch_row(m: Mapping[Any, Any]) -> BatchRow:
    return BatchRow(m["id"], m["name"], m["created_ms"], dict(m["defaults"] or {}))


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
    batch_id: int, seq: int, new: NewTask, now_ms: int
) -> dict[str, Any]:
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
        "units": None,
        "watch_timeout": False,
        "stuck": False,
        "deadline_ms": new.deadline_ms,
        "retry_of": new.retry_of,
        "learned_via": None,
    }
    task = new.task
    if task is None:
        return values
    # Adopting a task Kling already holds: it starts where Kling says it is.
    status = parse_status(task.task_status) or TaskStatus.SUBMITTED
    values |= observed_values(task)
    values["external_task_id"] = (
        new.external_task_id or task.external_task_id or external
    )
    values |= status_values(values, status, "local", now_ms)
    values["learned_via"] = "local"
    if status in ACTIVE:
        values["next_poll_ms"] = now_ms
    values.setdefault("result", None)
    values.setdefault("units", None)
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
    event_id: int = conn.execute(
        events.insert().returning(events.c.id),
        {
            "task_id": row["id"],
            "batch_id": row["batch_id"],
            "at_ms": now_ms,
            "source": source,
            "kind": kind,
            "old_status": None if old is None else old.value,
            "new_status": None if new is None else new.value,
            "payload": dict(payload),
        },
    ).scalar_one()
    if kind in OUTBOX_KINDS:
        conn.execute(
            outbox.insert(), {"event_id": event_id, "due_ms": now_ms, "attempts": 0}
        )
    return event_id


def apply_one(
    conn: sa.Connection,
    row: dict[str, Any],
    obs: Observation,
    now_ms: int,
    polled: list[int] | None = None,
) -> Change | None:
    """Judge one observation against ``row`` and write what it changes.

    An observation that changes nothing but the poll count (most polls) is only
    noted in ``polled`` when given, for one batched UPDATE by the caller.
    """
    task = obs.task
    old = TaskStatus(row["status"])
    values: dict[str, Any] = {}
    if obs.source in _POLL_SOURCES:
        values["polls"] = row["polls"] + 1
    if row["task_id"] is None:
        values["task_id"] = task.task_id
    new = parse_status(task.task_status)
    change = None
    if new is None:
        marker = f"drift: unknown status {task.task_status!r}"
        if row["last_error"] != marker:  # one loud event per new spelling, not per poll
            record_event(conn, row, now_ms, obs.source, "drift", old, None, wire(task))
            values["last_error"] = marker
    else:
        verdict = judge(old, row["kling_updated_ms"], new, kling_ms(task.updated_at))
        if verdict == Verdict.APPLY:
            values |= observed_values(task) | status_values(
                row, new, obs.source, now_ms
            )
            event_id = record_event(
                conn, row, now_ms, obs.source, "status", old, new, wire(task)
            )
            change = (old, new, event_id)
        elif verdict == Verdict.REFRESH:
            values |= observed_values(task)
        elif new != old:
            record_event(conn, row, now_ms, obs.source, "stale", old, new, wire(task))
    if not values:
        return None
    if polled is not None and values.keys() == {"polls"}:
        polled.append(row["id"])
        row["polls"] = values["polls"]
        return None
    after = update_task(conn, row["id"], values)
    row.clear()
    row.update(after)
    if change is None:
        return None
    return Change(task_row(after), *change)
