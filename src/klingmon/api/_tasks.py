"""Either generation's task, read the same way: parse a body, map it onto the domain.

The engine, the receiver and the store ask for a :class:`~klingmon.domain.Snapshot`
and never care which generation sent the task; this is the one place that tells.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

from klingmon.api._endpoints import Generation
from klingmon.api._models import Task
from klingmon.api._models import snapshot as legacy_snapshot
from klingmon.api._wire2026 import Task2026, snapshot2026

if TYPE_CHECKING:
    from collections.abc import Mapping

    from klingmon.domain import Snapshot

__all__ = ["AnyTask", "generation_of_body", "parse_task", "snapshot_of"]

#: A task of either generation, as parsed from the wire.
AnyTask: TypeAlias = Task | Task2026


def generation_of_body(raw: Mapping[str, Any]) -> Generation | None:
    """Which generation a task object is in, by its keys; None when neither."""
    if "task_id" in raw or "task_status" in raw:
        return Generation.LEGACY
    if "id" in raw and "status" in raw:
        return Generation.V2026
    return None


def parse_task(raw: Mapping[str, Any]) -> AnyTask:
    """A task object of either generation (a query answer or a callback body).

    Raises :class:`pydantic.ValidationError` when it is neither (no id or status).
    """
    if generation_of_body(raw) is Generation.V2026:
        return Task2026.model_validate(raw)
    return Task.model_validate(raw)


def snapshot_of(task: AnyTask | Mapping[str, Any]) -> Snapshot:
    """Any task, parsed or raw, of either generation, in klingmon's words."""
    if isinstance(task, Task):
        return legacy_snapshot(task)
    if isinstance(task, Task2026):
        return snapshot2026(task)
    return snapshot_of(parse_task(task))
