"""Pure mapping between database rows, wire tasks and the store's values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from klingmon.domain import ACTIVE, TERMINAL, Cost, TaskStatus
from klingmon.policy import DEFAULT_ACCOUNT, LEGACY_POOL
from klingmon.store._rows import EventRow, TaskRow

if TYPE_CHECKING:
    from collections.abc import Mapping

    from klingmon.domain import Snapshot

__all__ = [
    "COST_COLUMNS",
    "KLING_SKEW_MS",
    "cost_of_row",
    "cost_values",
    "event_row",
    "kling_ms",
    "observed_values",
    "status_values",
    "task_row",
    "wire",
]

_MAX_MS = 2**63 - 1
#: The ``tasks`` columns of a task's cost record, each named as its ``Cost`` field.
COST_COLUMNS = ("units", "cash", "currency", "package_type", "list_price", "cash_type")
#: How far ahead of ours Kling's clock may run (the Standard Webhooks tolerance):
#: a later time is cut back to it, so no answer can set a task's clock in the future.
KLING_SKEW_MS = 300_000


def task_row(m: Mapping[Any, Any]) -> TaskRow:
    return TaskRow(
        id=m["id"],
        batch_id=m["batch_id"],
        seq=m["seq"],
        endpoint=m["endpoint"],
        body=dict(m["body"] or {}),
        prompt=m["prompt"],
        model_name=m["model_name"],
        mode=m["mode"],
        duration=m["duration"],
        external_task_id=m["external_task_id"],
        task_id=m["task_id"],
        status=TaskStatus(m["status"]),
        status_msg=m["status_msg"],
        kling_created_ms=m["kling_created_ms"],
        kling_updated_ms=m["kling_updated_ms"],
        created_ms=m["created_ms"],
        submitted_ms=m["submitted_ms"],
        processing_ms=m["processing_ms"],
        finished_ms=m["finished_ms"],
        phase_ms=m["phase_ms"],
        next_poll_ms=m["next_poll_ms"],
        lease_owner=m["lease_owner"],
        lease_until_ms=m["lease_until_ms"],
        submit_attempts=m["submit_attempts"],
        polls=m["polls"],
        result=None if m["result"] is None else dict(m["result"]),
        units=m["units"],
        cost=cost_of_row(m),
        watch_timeout=bool(m["watch_timeout"]),
        stuck=bool(m["stuck"]),
        deadline_ms=m["deadline_ms"],
        retry_of=m["retry_of"],
        last_error=m["last_error"],
        learned_via=m["learned_via"],
        quoted_units=m.get("quoted_units"),
        spend=m.get("spend"),
        spend_units=m.get("spend_units"),
        request_hash=m.get("request_hash"),
        repeat_of=m.get("repeat_of"),
        pool=m.get("pool") or LEGACY_POOL,
        slots=m.get("slots") or 1,
        account=m.get("account", DEFAULT_ACCOUNT),
    )


def event_row(m: Mapping[Any, Any]) -> EventRow:
    old, new = m["old_status"], m["new_status"]
    return EventRow(
        id=m["id"],
        task_id=m["task_id"],
        batch_id=m["batch_id"],
        at_ms=m["at_ms"],
        source=m["source"],
        kind=m["kind"],
        old_status=None if old is None else TaskStatus(old),
        new_status=None if new is None else TaskStatus(new),
        payload=dict(m["payload"] or {}),
    )


def wire(task: Snapshot) -> dict[str, Any]:
    """The task as Kling sent it, JSON-ready (unknown fields kept)."""
    return dict(task.wire)


def kling_ms(value: int | None, now_ms: int) -> int | None:
    """Kling's epoch ms, or None when it cannot be one (a BIGINT must hold it).

    A time past ``now_ms + KLING_SKEW_MS`` is cut back to it, so no answer can put a
    task's last update in the future (which would switch its stuck check off).
    """
    if value is None or not 0 <= value <= _MAX_MS:
        return None
    return min(value, now_ms + KLING_SKEW_MS)


def observed_values(task: Snapshot, now_ms: int) -> dict[str, Any]:
    """The data fields an observation refreshes, whatever its status verdict."""
    values: dict[str, Any] = {"task_id": task.task_id}
    if task.message:
        values["status_msg"] = task.message
    if (created := kling_ms(task.created_ms, now_ms)) is not None:
        values["kling_created_ms"] = created
    if (updated := kling_ms(task.updated_ms, now_ms)) is not None:
        values["kling_updated_ms"] = updated
    if task.result is not None:
        values["result"] = task.result
    if task.units is not None:
        values["units"] = task.units
    if task.cost is not None:
        values |= cost_values(task.cost)
    return values


def cost_values(cost: Cost) -> dict[str, Any]:
    """The cost record's columns that Kling named (a later answer fills the rest)."""
    named = {name: getattr(cost, name) for name in COST_COLUMNS}
    return {name: value for name, value in named.items() if value is not None}


def cost_of_row(m: Mapping[Any, Any]) -> Cost | None:
    """The task's cost record from its row; None when Kling named no charge."""
    cost = Cost(**{name: m.get(name) for name in COST_COLUMNS})
    return None if cost.is_empty else cost


def status_values(
    row: Mapping[str, Any], new: TaskStatus, source: str, now_ms: int
) -> dict[str, Any]:
    """The columns a real status change sets: phase clock, milestones, lease."""
    values: dict[str, Any] = {"status": new.value, "phase_ms": now_ms}
    reached_kling = new in ACTIVE or new in {TaskStatus.SUCCEED, TaskStatus.FAILED}
    if reached_kling and row["submitted_ms"] is None:
        values["submitted_ms"] = now_ms
    if new is TaskStatus.PROCESSING and row["processing_ms"] is None:
        values["processing_ms"] = now_ms
    if new in TERMINAL:
        values["finished_ms"] = now_ms
        values["next_poll_ms"] = None
        values["lease_owner"] = None
        values["lease_until_ms"] = None
    if source != "local":
        values["learned_via"] = source
    return values
