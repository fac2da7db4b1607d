"""Sans-I/O protocol of the new generation: ``GET /tasks``, ``POST /tasks``, answers.

Nothing here sends or waits; the envelope and error mapping are the legacy ones
(:func:`klingmon.api._protocol.read_envelope`), since both generations share them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from pydantic import ValidationError

from klingmon.api._protocol import HEADERS, request_extensions
from klingmon.api._wire2026 import AccountCosts, Task2026, TaskPage
from klingmon.errors import RequestValidationError, UnexpectedResponseError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.api._models import Envelope

__all__ = [
    "COSTS_PATH",
    "QUERY_LIMIT_RANGE",
    "TASKS_PATH",
    "build_account_costs",
    "build_get_tasks",
    "build_query_tasks",
    "costs_from",
    "page_from",
    "task2026_from",
    "tasks2026_from",
]

TASKS_PATH = "/tasks"
#: The account's resource packs; it takes both credentials (it predates API keys).
COSTS_PATH = "/account/costs"
#: ``limit`` of ``POST /tasks`` (reference: default 100, max 500).
QUERY_LIMIT_RANGE = (1, 500)
#: ``filters[].key`` values Kling documents.
_STATUS_KEY, _PRODUCT_KEY = "status", "product_type"


def build_get_tasks(
    base_url: str,
    ids: Sequence[str],
    *,
    external: bool = False,
    timeout: float,
) -> httpx.Request:
    """``GET /tasks?task_ids=a,b`` (or ``external_task_ids=``): one batch."""
    if not ids or any(not i or "," in i for i in ids):
        raise RequestValidationError("ids must be non-empty and free of commas")
    key = "external_task_ids" if external else "task_ids"
    return httpx.Request(
        "GET",
        base_url.rstrip("/") + TASKS_PATH,
        params={key: ",".join(ids)},
        headers=HEADERS,
        extensions=request_extensions(timeout),
    )


def build_query_tasks(
    base_url: str,
    *,
    statuses: Sequence[str] = (),
    product_types: Sequence[str] = (),
    since_ms: int | None = None,
    until_ms: int | None = None,
    cursor: str | None = None,
    limit: int = 100,
    timeout: float,
) -> httpx.Request:
    """``POST /tasks``: a filtered page; a cursor overrides the time window."""
    low, high = QUERY_LIMIT_RANGE
    if not low <= limit <= high:
        raise RequestValidationError(f"limit must be within {low}..{high}")
    body: dict[str, Any] = {"limit": limit}
    # Times go as strings, as in Kling's official example.
    if since_ms is not None:
        body["start_time"] = str(since_ms)
    if until_ms is not None:
        body["end_time"] = str(until_ms)
    if cursor:
        body["cursor"] = cursor
    filters = [
        {"key": key, "values": list(values)}
        for key, values in ((_STATUS_KEY, statuses), (_PRODUCT_KEY, product_types))
        if values
    ]
    if filters:
        body["filters"] = filters
    return httpx.Request(
        "POST",
        base_url.rstrip("/") + TASKS_PATH,
        json=body,
        headers=HEADERS,
        extensions=request_extensions(timeout),
    )


def _unusable(envelope: Envelope, status: int, what: str) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"answer carried {what}",
        status_code=status,
        code=envelope.code,
        request_id=envelope.request_id,
    )


def build_account_costs(
    base_url: str, *, since_ms: int, until_ms: int, timeout: float
) -> httpx.Request:
    """``GET /account/costs``: the resource packs (QPS <= 1; counts may lag)."""
    return httpx.Request(
        "GET",
        base_url.rstrip("/") + COSTS_PATH,
        params={"start_time": str(since_ms), "end_time": str(until_ms)},
        headers=HEADERS,
        extensions=request_extensions(timeout),
    )


def costs_from(envelope: Envelope, status: int) -> AccountCosts:
    """The packs of a ``GET /account/costs`` answer (none: an empty list)."""
    data = envelope.data
    if data is None:
        return AccountCosts()
    if not isinstance(data, dict):
        raise _unusable(envelope, status, "no account object in data")
    try:
        return AccountCosts.model_validate(data)
    except ValidationError:
        raise _unusable(envelope, status, "an unreadable resource pack") from None


def task2026_from(envelope: Envelope, status: int) -> Task2026:
    """The single task in ``data`` (a create's answer)."""
    if not isinstance(envelope.data, dict):
        raise _unusable(envelope, status, "no task object in data")
    try:
        return Task2026.model_validate(envelope.data)
    except ValidationError:
        raise _unusable(envelope, status, "a task without id or status") from None


def tasks2026_from(envelope: Envelope, status: int) -> list[Task2026]:
    """The tasks of a ``GET /tasks`` answer; unknown ids are simply missing."""
    data = envelope.data
    if data is None:
        return []
    if isinstance(data, dict) and "result" in data:
        data = data["result"] or []
    if not isinstance(data, list):
        raise _unusable(envelope, status, "no task list in data")
    try:
        return [Task2026.model_validate(item) for item in data]
    except ValidationError:
        raise _unusable(envelope, status, "a task without id or status") from None


def page_from(envelope: Envelope, status: int) -> TaskPage:
    """A ``POST /tasks`` page; an empty one may carry neither result nor cursor."""
    data = envelope.data
    if data is None:
        return TaskPage()
    if not isinstance(data, dict):
        raise _unusable(envelope, status, "no page object in data")
    try:
        return TaskPage.model_validate(data)
    except ValidationError:
        raise _unusable(envelope, status, "a page with an unreadable task") from None
