"""The new generation's query requests, read into plain values (or a 1201 message).

``POST /tasks`` pages newest first; its cursor names the window and the position
in the creation order where the next page starts, so tasks created meanwhile
never shift a page.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MAX_LIMIT",
    "STATUSES",
    "Sweep",
    "next_cursor",
    "parse_ids",
    "parse_sweep",
]

MAX_LIMIT = 500
_DEFAULT_LIMIT = 100
_WINDOW_MS = 30 * 86400 * 1000
STATUSES = frozenset({"submitted", "processing", "succeeded", "failed"})
_PRODUCTS = frozenset({"video", "image", "try_on"})


@dataclass(frozen=True, slots=True)
class Sweep:
    """One ``POST /tasks`` page request."""

    start_ms: int
    end_ms: int
    limit: int
    statuses: frozenset[str]
    products: frozenset[str]
    #: From the cursor: the next page holds tasks created before this position.
    position: int | None = None


def parse_ids(params: dict[str, str], top: int) -> tuple[list[str], bool] | str:
    """``(ids, external)`` of ``GET /tasks``, or the 1201 message."""
    ids = params.get("task_ids", "").strip()
    external = params.get("external_task_ids", "").strip()
    if ids and external:
        return "only one of task_ids or external_task_ids may be given"
    if not ids and not external:
        return "task_ids or external_task_ids is required"
    values = [v.strip() for v in (ids or external).split(",") if v.strip()]
    if len(values) > top:
        name = "task_ids" if ids else "external_task_ids"
        return f"{name} is invalid: at most {top} ids per request"
    return values, not ids


def _ms(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key)
    if value in (None, ""):
        return default
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{key} value '{value}' is invalid")  # noqa: TRY004
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{key} value '{value}' is invalid") from None


def _limit(body: dict[str, Any]) -> int:
    value = body.get("limit", _DEFAULT_LIMIT)
    try:
        limit = int(value) if not isinstance(value, bool) else 0
    except (TypeError, ValueError):
        limit = 0
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(
            f"limit value '{value}' is invalid: must be in [1, {MAX_LIMIT}]"
        )
    return limit


def _filters(body: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    raw = body.get("filters") or []
    if not isinstance(raw, list):
        raise ValueError("filters is invalid: must be a list")  # noqa: TRY004
    chosen: dict[str, frozenset[str]] = {}
    allowed = {"status": STATUSES, "product_type": _PRODUCTS}
    for item in raw:
        key = item.get("key") if isinstance(item, dict) else None
        values = item.get("values") if isinstance(item, dict) else None
        if key not in allowed or not isinstance(values, list):
            raise ValueError(f"filters is invalid: {item!r}")
        if not set(values) <= allowed[key]:
            raise ValueError(f"filters {key} value {values!r} is invalid")
        chosen[key] = frozenset(values)
    return chosen.get("status", frozenset()), chosen.get("product_type", frozenset())


def _decode_cursor(cursor: str) -> tuple[int, int, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return int(data["s"]), int(data["e"]), int(data["p"])
    except (binascii.Error, ValueError, KeyError, TypeError):
        raise ValueError("cursor is invalid") from None


def parse_sweep(body: dict[str, Any], now_ms: int) -> Sweep | str:
    """The page ``body`` asks for, or the 1201 message; a cursor wins over times."""
    try:
        limit = _limit(body)
        statuses, products = _filters(body)
        cursor = body.get("cursor")
        if cursor:
            start, end, position = _decode_cursor(str(cursor))
            return Sweep(start, end, limit, statuses, products, position)
        end = _ms(body, "end_time", now_ms)
        start = _ms(body, "start_time", end - _WINDOW_MS)
    except ValueError as exc:
        return str(exc)
    if start > end:
        return "start_time must not be after end_time"
    return Sweep(start, end, limit, statuses, products)


def next_cursor(query: Sweep, position: int) -> str:
    text = json.dumps({"s": query.start_ms, "e": query.end_ms, "p": position})
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
