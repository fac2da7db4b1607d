"""The read-only JSON API: batches, tasks and a task's events."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request

if TYPE_CHECKING:
    from klingmon.store import BatchRow, EventRow, Store, TaskRow

__all__ = ["router"]

router = APIRouter(prefix="/api", tags=["api"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "Not found"}}


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _batch_json(store: Store, batch: BatchRow) -> dict[str, Any]:
    counts = store.tasks.count_by_status(batch.id)
    return {
        "id": batch.id,
        "name": batch.name,
        "created_ms": batch.created_ms,
        "priority": batch.priority,
        "total": sum(counts.values()),
        "counts": {status.value: n for status, n in counts.items() if n},
    }


def _task_json(row: TaskRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "batch_id": row.batch_id,
        "seq": row.seq,
        "endpoint": row.endpoint,
        "external_task_id": row.external_task_id,
        "task_id": row.task_id,
        "status": row.status.value,
        "status_msg": row.status_msg,
        "prompt": row.prompt,
        "model_name": row.model_name,
        "mode": row.mode,
        "duration": row.duration,
        "created_ms": row.created_ms,
        "submitted_ms": row.submitted_ms,
        "processing_ms": row.processing_ms,
        "finished_ms": row.finished_ms,
        "kling_created_ms": row.kling_created_ms,
        "kling_updated_ms": row.kling_updated_ms,
        "next_poll_ms": row.next_poll_ms,
        "polls": row.polls,
        "result": row.result,
        "units": row.units,
        "cost": None if row.cost is None else dataclasses.asdict(row.cost),
        "stuck": row.stuck,
        "watch_timeout": row.watch_timeout,
        "learned_via": row.learned_via,
        "last_error": row.last_error,
    }


def _event_json(event: EventRow) -> dict[str, Any]:
    return {
        "id": event.id,
        "task_id": event.task_id,
        "batch_id": event.batch_id,
        "at_ms": event.at_ms,
        "source": event.source,
        "kind": event.kind,
        "old_status": None if event.old_status is None else event.old_status.value,
        "new_status": None if event.new_status is None else event.new_status.value,
        "payload": event.payload,
    }


def _plain_number(ref: str) -> bool:
    return ref.isascii() and ref.isdigit() and len(ref) < 18


def _find_batch(store: Store, ref: str) -> BatchRow:
    if ref.isdigit() and not _plain_number(ref):
        raise HTTPException(404, detail="no such batch")
    batch = store.tasks.batch(ref)
    if batch is None:
        raise HTTPException(404, detail="no such batch")
    return batch


def _find_task(store: Store, ref: str) -> TaskRow:
    row = store.tasks.task(int(ref)) if _plain_number(ref) else None
    row = row or store.tasks.task(ref)
    if row is None:
        raise HTTPException(404, detail="no such task")
    return row


Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0, le=10_000_000)]


@router.get("/batches", summary="Every batch with its counts by status")
def list_batches(request: Request) -> list[dict[str, Any]]:
    store = _store(request)
    return [_batch_json(store, b) for b in store.tasks.batches()]


@router.get("/batches/{ref}", summary="One batch and its report", responses=_NOT_FOUND)
def get_batch(request: Request, ref: str) -> dict[str, Any]:
    store = _store(request)
    batch = _find_batch(store, ref)
    report = store.reports.report(batch.id)
    return _batch_json(store, batch) | {
        "learned_via": report.learned_via,
        "statuses_via": report.statuses_via,
        "requests": report.requests,
        "requests_per_task": report.requests_per_task,
        "failures": report.failures,
        "units": report.units,
        "cash": report.cash,
        "stuck": report.stuck,
        "watch_timeout": report.watch_timeout,
    }


@router.get("/batches/{ref}/tasks", summary="A batch's tasks", responses=_NOT_FOUND)
def batch_tasks(
    request: Request, ref: str, limit: Limit = 100, offset: Offset = 0
) -> list[dict[str, Any]]:
    store = _store(request)
    batch = _find_batch(store, ref)
    rows = store.tasks.tasks(batch.id)
    return [_task_json(r) for r in rows[offset : offset + limit]]


@router.get(
    "/tasks/{ref}",
    summary="One task by local id, Kling task_id or external_task_id",
    responses=_NOT_FOUND,
)
def get_task(request: Request, ref: str) -> dict[str, Any]:
    return _task_json(_find_task(_store(request), ref))


@router.get("/tasks/{ref}/events", summary="A task's event log", responses=_NOT_FOUND)
def task_events(
    request: Request, ref: str, limit: Limit = 100, since: Offset = 0
) -> list[dict[str, Any]]:
    store = _store(request)
    row = _find_task(store, ref)
    found = store.outbox.events(task_id=row.id, since_id=since, limit=limit)
    return [_event_json(e) for e in found]
