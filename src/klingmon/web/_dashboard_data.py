"""What the dashboard's pages show, built from the store: plain dicts for templates.

Kept apart from the routes so that formatting, redaction, the ETA and the histogram
are plain functions of rows and numbers.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from klingmon.domain import FAILURES, TERMINAL, TaskStatus
from klingmon.policy import expiring_packs
from klingmon.store import RETENTION_MS

if TYPE_CHECKING:
    from klingmon.policy import AccountFigures
    from klingmon.store import BatchSummary, DownloadRow, EventRow, TaskRow

__all__ = [
    "FAILED",
    "STATUS_ORDER",
    "RequestWindow",
    "bar",
    "batch_eta",
    "files_state",
    "fmt_ms",
    "fmt_s",
    "histogram",
    "packs_view",
    "redact",
    "task_view",
    "timeline",
]

#: Order of the segments of a progress bar and of the legend.
STATUS_ORDER = (
    TaskStatus.SUCCEED,
    TaskStatus.FAILED,
    TaskStatus.REJECTED,
    TaskStatus.CANCELLED,
    TaskStatus.PROCESSING,
    TaskStatus.SUBMITTED,
    TaskStatus.SUBMITTING,
    TaskStatus.QUEUED,
)
FAILED = FAILURES
#: Keys whose values are never shown (secrets, and URLs that carry a token).
_SECRET_WORDS = ("secret", "token", "key", "password", "authorization", "callback")
_LONG = 300
_HOUR = 3600.0


def fmt_ms(ms: int | None) -> str:
    """Epoch ms as a UTC date and time ('' for None)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def packs_view(figures: AccountFigures | None, now_ms: int) -> dict[str, Any] | None:
    """The account's packs for the overview (None: never asked): units left, when
    each expires, and which expire soon with units left."""
    if figures is None:
        return None
    soon = {id(p) for p in expiring_packs(figures, now_ms)}
    packs = [
        {
            "label": p.label,
            "remaining": p.remaining,
            "total": p.total,
            "status": p.status or "",
            "expires_ms": p.expires_ms,
            "expiring": id(p) in soon,
            "days_left": None
            if p.expires_ms is None
            else max(0.0, (p.expires_ms - now_ms) / 86_400_000),
        }
        for p in figures.packs
    ]
    return {
        "fetched_ms": figures.fetched_ms,
        "remaining": figures.remaining,
        "packs": packs,
    }


def fmt_s(seconds: float | None) -> str:
    """A duration for people: ``850 ms``, ``42 s``, ``3 m 05 s``, ``2 h 07 m``."""
    if seconds is None or math.isnan(seconds):
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} m"


def redact(value: Any, key: str = "") -> Any:
    """``value`` with secret-looking keys hidden and long strings (images) cut."""
    if any(word in key.lower() for word in _SECRET_WORDS):
        return "(hidden)"
    if isinstance(value, dict):
        return {str(k): redact(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if isinstance(value, str) and len(value) > _LONG:
        return f"{value[:60]}… ({len(value)} characters)"
    return value


def bar(counts: dict[TaskStatus, int]) -> list[dict[str, Any]]:
    """Segments of a progress bar: status, count and x/width out of 1000."""
    total = sum(counts.values())
    segments: list[dict[str, Any]] = []
    x = 0.0
    for status in STATUS_ORDER:
        n = counts.get(status, 0)
        if not n or not total:
            continue
        width = 1000 * n / total
        segments.append({"status": status.value, "n": n, "x": x, "width": width})
        x += width
    return segments


def batch_eta(summary: BatchSummary, now_ms: int) -> float | None:
    """Seconds left at the batch's pace so far (None: done, or no pace yet)."""
    total = sum(summary.counts.values())
    finished = sum(n for s, n in summary.counts.items() if s in TERMINAL)
    left = total - finished
    if not left or not finished or summary.first_submitted_ms is None:
        return None
    elapsed = (now_ms - summary.first_submitted_ms) / 1000
    if elapsed <= 0:
        return None
    return left * elapsed / finished


def files_state(rows: list[DownloadRow]) -> str:
    """One word (or ``1/2 done``) for a task's result files."""
    if not rows:
        return ""
    states = {r.status for r in rows}
    if len(states) == 1:
        return rows[0].status
    done = sum(1 for r in rows if r.status == "done")
    return f"{done}/{len(rows)} done"


def task_view(row: TaskRow, files: list[DownloadRow], now_ms: int) -> dict[str, Any]:
    """One line of a batch's task table."""
    queue = processing = None
    if row.submitted_ms is not None:
        queue = (row.submitted_ms - row.created_ms) / 1000
    elif row.status in {TaskStatus.QUEUED, TaskStatus.SUBMITTING}:
        queue = (now_ms - row.created_ms) / 1000
    started = row.processing_ms or row.submitted_ms
    if started is not None and row.finished_ms is not None:
        processing = (row.finished_ms - started) / 1000
    elif row.status == TaskStatus.PROCESSING and row.processing_ms is not None:
        processing = (now_ms - row.processing_ms) / 1000
    reason = row.status_msg if row.status in FAILED else None
    return {
        "id": row.id,
        "seq": row.seq,
        "status": row.status.value,
        "prompt": row.prompt or "",
        "endpoint": row.endpoint.rsplit("/", 1)[-1],
        "model": row.model_name or "",
        "mode": row.mode or "",
        "queue_s": queue,
        "processing_s": processing,
        "learned_via": row.learned_via or "",
        "stuck": row.stuck,
        "timeout": row.watch_timeout,
        "reason": reason or row.last_error or "",
        "files": files_state(files),
        "videos": [f.id for f in files if f.status == "done" and f.kind == "video"],
    }


def timeline(events: list[EventRow], files: list[DownloadRow]) -> list[dict[str, Any]]:
    """A task's events and its files' downloads, oldest first, for the task page.

    Polls that saw nothing new leave no event (the task's ``polls`` counts them).
    """
    lines: list[dict[str, Any]] = []
    for f in files:
        name = f"{f.kind} {f.idx + 1}"
        lines.append(
            _line(f"f{f.id}a", f.created_ms, "download", "owed", name, payload={})
        )
        if f.done_ms is not None:
            size = {"size": f.size, "sha256": f.sha256}
            lines.append(
                _line(f"f{f.id}b", f.done_ms, "download", "done", name, payload=size)
            )
        elif f.status not in {"pending", "done"}:
            error = {"error": f.last_error} if f.last_error else {}
            lines.append(
                _line(
                    f"f{f.id}b", f.created_ms, "download", f.status, name, payload=error
                )
            )
    for e in events:
        change = ""
        if e.new_status is not None and e.new_status != e.old_status:
            old = e.old_status.value if e.old_status is not None else "—"
            change = f"{old} → {e.new_status.value}"
        lines.append(
            _line(str(e.id), e.at_ms, e.source, e.kind, change, payload=e.payload)
        )
    lines.sort(key=lambda line: line["ms"])
    return lines


def _line(key: str, ms: int, *what: str, payload: dict[str, Any]) -> dict[str, Any]:
    source, kind, change = what
    return {
        "id": key,
        "ms": ms,
        "at": fmt_ms(ms),
        "source": source,
        "kind": kind,
        "change": change,
        "payload": redact(payload),
    }


def expiry_ms(row: TaskRow, files: list[DownloadRow]) -> int | None:
    """When Kling deletes the task's results."""
    found = [f.expires_ms for f in files if f.expires_ms is not None]
    if found:
        return min(found)
    if row.status != TaskStatus.SUCCEED:
        return None
    return (row.kling_created_ms or row.created_ms) + RETENTION_MS


def histogram(values: list[float], bins: int = 12) -> list[dict[str, Any]]:
    """Equal-width bins over ``values``: label, count and height out of 100."""
    if not values:
        return []
    low, high = min(values), max(values)
    width = (high - low) / bins if high > low else 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - low) / width))] += 1
    top = max(counts)
    return [
        {
            "low": low + i * width,
            "high": low + (i + 1) * width,
            "n": n,
            "height": 100 * n / top,
        }
        for i, n in enumerate(counts)
    ]


class RequestWindow:
    """Kling requests and 1302/1303 answers over the last hour, from the counters.

    The store's counters are running totals; this keeps samples of them (at most one
    a minute) and answers with the difference to the oldest sample within the hour.
    The window starts when the dashboard does: ``since`` says when that was.
    """

    def __init__(self) -> None:
        self._samples: deque[tuple[float, dict[str, int]]] = deque()
        self._lock = threading.Lock()

    def figures(self, now: float, totals: dict[str, int]) -> dict[str, Any]:
        with self._lock:
            while self._samples and self._samples[0][0] < now - _HOUR:
                if len(self._samples) == 1:
                    break
                self._samples.popleft()
            if not self._samples or now - self._samples[-1][0] >= 60:
                self._samples.append((now, dict(totals)))
            since, base = self._samples[0]

        def delta(*names: str) -> int:
            return sum(totals.get(n, 0) - base.get(n, 0) for n in names)

        return {
            "requests": delta("create", "get", "list"),
            "limited_1302": delta("1302"),
            "limited_1303": delta("1303"),
            "since_ms": round(since * 1000) if now - since < _HOUR - 60 else None,
            "total": sum(totals.get(n, 0) for n in ("create", "get", "list")),
        }
