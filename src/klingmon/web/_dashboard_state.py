"""The dashboard's settings and live state: token checks, change marks, streams.

Without a token the dashboard is read-only. With one, requests must carry it as
``Authorization: Bearer`` or as the session cookie, an HMAC of the token (so the
cookie never holds the token itself); both are compared in constant time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from klingmon.web import _dashboard_data as data

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from fastapi import Request

    from klingmon.downloads import DownloadSettings
    from klingmon.store import Store

__all__ = ["COOKIE", "Dashboard", "event_stream", "join_mark"]

COOKIE = "klingmon_session"


class Dashboard:
    """The dashboard's settings and live state (open event streams, downloads).

    ``download_dir``: the folder results are downloaded into. ``downloads``: the
    settings the "download now" action fetches with (None: the action is off).
    ``wake``: called (from a worker thread) after an action stored new work.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        download_dir: str | None = None,
        downloads: DownloadSettings | None = None,
        slots: int | None = None,
        wake: Callable[[], None] | None = None,
        poll_interval: float = 0.25,
        stream_seconds: float = 60.0,
    ) -> None:
        self._token = token or None
        self.download_dir = download_dir
        self.downloads = downloads
        self.slots = slots
        self.wake = wake
        self.poll_interval = poll_interval
        self.stream_seconds = stream_seconds
        self.window = data.RequestWindow()
        self._closing = threading.Event()
        self._marks: dict[tuple[int | None, int | None], tuple[float, str]] = {}
        self._marks_lock = threading.Lock()

        #: Download-now jobs by batch id (one at a time per batch).
        self.running: dict[int, asyncio.Task[None]] = {}

    @property
    def protected(self) -> bool:
        return self._token is not None

    def close(self) -> None:
        """End open event streams and download jobs (before stopping the server)."""
        self._closing.set()
        for job in self.running.values():
            if not job.done():
                job.get_loop().call_soon_threadsafe(job.cancel)

    def mark(self, store: Store, batch_id: int | None, task_id: int | None) -> str:
        """The store's change mark, computed once per poll interval per page kind.

        Every open page polls; sharing the answer keeps the store's load at one
        query set per interval and kind of page, however many browsers watch.
        """
        key = (batch_id, task_id)
        now = time.monotonic()
        with self._marks_lock:
            found = self._marks.get(key)
            if found is not None and now - found[0] < self.poll_interval * 0.8:
                return found[1]
        mark = join_mark(store.reports.change_mark(batch_id=batch_id, task_id=task_id))
        with self._marks_lock:
            if len(self._marks) > 1000:
                self._marks.clear()
            self._marks[key] = (now, mark)
        return mark

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def session(self) -> str:
        """The cookie value: an HMAC of the token, so the cookie never holds it."""
        key = (self._token or "").encode()
        return hmac.new(key, b"klingmon-dashboard-session", hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        if self._token is None:
            return False
        return hmac.compare_digest(given.encode(), self._token.encode())

    def signed_in(self, request: Request) -> bool:
        """The request carries the token (bearer) or the session cookie."""
        if self._token is None:
            return False
        auth = request.headers.get("authorization", "")
        if auth.startswith("Bearer ") and self.token_matches(auth[7:]):
            return True
        cookie = request.cookies.get(COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self.session().encode())

    def __repr__(self) -> str:
        return f"Dashboard(protected={self.protected}, dir={self.download_dir!r})"


async def event_stream(
    store: Store,
    dashboard: Dashboard,
    last: str | None,
    batch_id: int | None,
    task_id: int | None,
) -> AsyncIterator[str]:
    """``changed`` messages whenever the store's mark moves; ends by itself."""
    yield "retry: 1000\n\n"
    started = time.monotonic()
    beat = started
    while (
        not dashboard.closing and time.monotonic() - started < dashboard.stream_seconds
    ):
        mark = _mark(
            await run_in_threadpool(
                store.reports.change_mark, batch_id=batch_id, task_id=task_id
            )
        )
        now = time.monotonic()
        if mark != last:
            last = mark
            beat = now
            yield f"id: {mark}\ndata: {json.dumps({'mark': mark})}\n\n"
        elif now - beat > 15:
            beat = now
            yield ": keep-alive\n\n"
        await asyncio.sleep(dashboard.poll_interval)


def _mark(values: tuple[int, ...]) -> str:
    return "-".join(str(v) for v in values)


def join_mark(values: tuple[int, ...]) -> str:
    return "-".join(str(v) for v in values)
