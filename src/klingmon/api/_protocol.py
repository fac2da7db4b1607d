"""Sans-I/O protocol: build Kling requests and turn Kling answers into models or errors.

Nothing here sends or waits. Both clients and the tests feed plain
``httpx.Response`` objects through these functions.
"""

from __future__ import annotations

import json
import re
import secrets
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from klingmon.api._models import Envelope, Task
from klingmon.api._retry import parse_retry_after
from klingmon.errors import (
    ApiError,
    InvalidRequestError,
    RequestValidationError,
    TaskNotFoundError,
    UnexpectedResponseError,
    error_for_code,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "HEADERS",
    "PAGE_NUM_RANGE",
    "PAGE_SIZE_RANGE",
    "build_create",
    "build_get",
    "build_get_by_external",
    "build_list",
    "excerpt",
    "mint_external_task_id",
    "not_found",
    "pick_external",
    "read_envelope",
    "request_extensions",
    "request_kind",
    "task_from",
    "tasks_from",
]

PAGE_NUM_RANGE = (1, 1000)
PAGE_SIZE_RANGE = (1, 500)
_EXCERPT = 160
_SECRETISH = re.compile(
    r"(Bearer\s+\S+|eyJ[\w-]+\.[\w-]+\.[\w-]*|whsec_\S+)", re.IGNORECASE
)
_SPRING_KEYS = frozenset({"timestamp", "status", "error", "path"})


def mint_external_task_id() -> str:
    """A fresh id that makes a create idempotent: ``km-`` and 12 hex digits."""
    return f"km-{secrets.token_hex(6)}"


def _url(base_url: str, path: str) -> str:
    return base_url.rstrip("/") + path


def request_extensions(timeout: float) -> dict[str, Any]:
    """The per-request httpx extensions (the timeout) every built request carries."""
    return {"timeout": httpx.Timeout(timeout).as_dict()}


#: Headers every request to Kling carries (auth is added by the client's Auth).
HEADERS = {"Accept": "application/json", "User-Agent": "klingmon"}
_HEADERS = HEADERS
_extensions = request_extensions


def build_create(
    base_url: str, path: str, body: dict[str, Any], timeout: float
) -> httpx.Request:
    return httpx.Request(
        "POST",
        _url(base_url, path),
        json=body,
        headers=_HEADERS,
        extensions=_extensions(timeout),
    )


def build_get(base_url: str, path: str, task_id: str, timeout: float) -> httpx.Request:
    if not task_id:
        raise RequestValidationError("task_id must not be empty")
    return httpx.Request(
        "GET",
        _url(base_url, f"{path}/{quote(task_id, safe='')}"),
        headers=_HEADERS,
        extensions=_extensions(timeout),
    )


def build_get_by_external(
    base_url: str, path: str, external_task_id: str, timeout: float
) -> httpx.Request:
    if not external_task_id:
        raise RequestValidationError("external_task_id must not be empty")
    return httpx.Request(
        "GET",
        _url(base_url, path),
        params={"external_task_id": external_task_id},
        headers=_HEADERS,
        extensions=_extensions(timeout),
    )


def build_list(
    base_url: str, path: str, page: int, page_size: int, timeout: float
) -> httpx.Request:
    low, high = PAGE_NUM_RANGE
    if not low <= page <= high:
        raise RequestValidationError(f"page must be within {low}..{high}")
    low, high = PAGE_SIZE_RANGE
    if not low <= page_size <= high:
        raise RequestValidationError(f"page_size must be within {low}..{high}")
    return httpx.Request(
        "GET",
        _url(base_url, path),
        params={"pageNum": page, "pageSize": page_size},
        headers=_HEADERS,
        extensions=_extensions(timeout),
    )


def request_kind(request: httpx.Request) -> str:
    """``create``, ``list`` or ``get``: the counter a sent request goes to.

    On the new generation ``GET /tasks`` (a batch by ids) is a ``get`` and the
    filtered ``POST /tasks`` a ``list``; both are queries, not creates.
    """
    is_tasks = request.url.path.rstrip("/").endswith("/tasks")
    if request.method == "POST":
        return "list" if is_tasks else "create"
    if "pageNum" in request.url.params:
        return "list"
    return "get"


def excerpt(text: str) -> str:
    """A short, single-line, secret-free sample of a body for an error message."""
    flat = " ".join(_SECRETISH.sub("[redacted]", text).split())
    return flat if len(flat) <= _EXCERPT else flat[: _EXCERPT - 1] + "…"


def _request_id(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("x-request-id")
    return value


def read_envelope(response: httpx.Response, now: float) -> Envelope:
    """Kling's envelope from a response; any error answer raises its error class.

    ``now`` (epoch seconds) turns an HTTP-date ``Retry-After`` into seconds.
    """
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("retry-after"), now)
    text = response.text
    try:
        raw = json.loads(text) if text.strip() else None
    except ValueError:
        raw = None
        parsed = False
    else:
        parsed = True
    if not parsed or not isinstance(raw, dict) or not isinstance(raw.get("code"), int):
        if isinstance(raw, dict) and status == 404 and raw.keys() >= _SPRING_KEYS:
            raise InvalidRequestError(
                f"no such route {excerpt(str(raw.get('path')))!r} at Kling; "
                "check the endpoint path and the base URL",
                status_code=status,
                request_id=_request_id(response),
            )
        what = "not JSON" if not parsed else "not Kling's envelope"
        body = excerpt(text) or "empty body"
        raise UnexpectedResponseError(
            f"answer was {what}: {body}",
            status_code=status,
            request_id=_request_id(response),
            retry_after=retry_after,
        )
    try:
        envelope = Envelope.model_validate(raw)
    except ValidationError:
        raise UnexpectedResponseError(
            f"answer was not Kling's envelope: {excerpt(text)}",
            status_code=status,
            request_id=_request_id(response),
            retry_after=retry_after,
        ) from None
    if envelope.code != 0 or status >= 400:
        code = envelope.code if envelope.code != 0 else None
        cls = error_for_code(code, status)
        raise cls(
            excerpt(envelope.message) or f"Kling error {envelope.code}",
            status_code=status,
            code=code,
            request_id=envelope.request_id or _request_id(response),
            retry_after=retry_after,
        )
    return envelope


def _unusable(envelope: Envelope, status: int, what: str) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"answer carried {what}",
        status_code=status,
        code=envelope.code,
        request_id=envelope.request_id,
    )


def task_from(envelope: Envelope, status: int) -> Task:
    """The single task in ``data``."""
    if not isinstance(envelope.data, dict):
        raise _unusable(envelope, status, "no task object in data")
    try:
        return Task.model_validate(envelope.data)
    except ValidationError:
        raise _unusable(
            envelope, status, "a task without task_id or task_status"
        ) from None


def tasks_from(
    envelope: Envelope,
    status: int,
    only: Callable[[Mapping[str, Any]], bool] | None = None,
) -> list[Task]:
    """The list of tasks in ``data`` (a list page), or those ``only`` accepts."""
    data = envelope.data
    if data is None:
        return []
    if not isinstance(data, list):
        raise _unusable(envelope, status, "no task list in data")
    if only is not None:
        data = [item for item in data if not isinstance(item, dict) or only(item)]
    try:
        return [Task.model_validate(item) for item in data]
    except ValidationError:
        raise _unusable(
            envelope, status, "a task without task_id or task_status"
        ) from None


def pick_external(
    envelope: Envelope, status: int, external_task_id: str
) -> Task | None:
    """The task for an external id, whether ``data`` is one task or a list.

    None when a list came back without it (a server that ignored the filter).
    """
    if isinstance(envelope.data, list):
        for task in tasks_from(envelope, status):
            if task.external_task_id == external_task_id:
                return task
        return None
    task = task_from(envelope, status)
    if task.external_task_id not in (None, external_task_id):
        raise _unusable(envelope, status, "a task with another external_task_id")
    return task


def not_found(ref: str, error: ApiError | None = None) -> TaskNotFoundError:
    """The error for a task query that found nothing."""
    return TaskNotFoundError(
        error.kling_message if error is not None else f"no task {ref}",
        status_code=error.status_code if error is not None else 404,
        code=error.code if error is not None else None,
        request_id=error.request_id if error is not None else None,
    )
