"""The dashboard: server-rendered pages over the store, live through server-sent events.

Each page renders whole; ``?fragment=1`` renders only its live part, which the page's
script fetches again whenever ``/events`` reports that the store changed. The stream
polls :meth:`Store.change_mark` (a few indexed lookups) and ends now and then, or at
:meth:`Dashboard.close`; the browser's EventSource reconnects by itself, across a
server restart too.

Without a token the dashboard is read-only (and ``klingmon serve`` only binds to
loopback). With one, every page wants it, as ``Authorization: Bearer`` or as the
cookie ``/login`` sets (an HMAC of the token, never the token itself), and the
actions (retry failed tasks, cancel unsent ones, download now) become available.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

import jinja2
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from klingmon._clock import to_ms
from klingmon.domain import TERMINAL, BatchState
from klingmon.downloads import Downloader
from klingmon.engine import Account
from klingmon.errors import KlingmonError
from klingmon.policy import priority_problem
from klingmon.store import retry_batch
from klingmon.web import _dashboard_data as data
from klingmon.web._dashboard_state import COOKIE, Dashboard, event_stream, join_mark

if TYPE_CHECKING:
    from fastapi import FastAPI

    from klingmon._clock import Clock
    from klingmon.downloads import DownloadSettings
    from klingmon.store import BatchRow, BatchSummary, Store, TaskRow

__all__ = ["Dashboard", "install_dashboard"]

logger = logging.getLogger(__name__)

_HERE = Path(__file__).parent
_MEDIA = {".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png"}
_MEDIA |= {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "media-src 'self'; connect-src 'self'; frame-ancestors 'none'; form-action 'self'"
)
_MAX_ROWS = 1000
_LOGIN: dict[str, Any] = {"title": "Sign in"}
_NOTES = {
    "retry": "Retry batch {new} created: its tasks are queued.",
    "download": "Downloading this batch's owed files now.",
    "nothing": (
        "No failed or rejected tasks to retry (tasks that failed content moderation "
        "are left out: `klingmon retry --include-moderated` resends them)."
    ),
    "busy": "A download of this batch is already running.",
    "priority": (
        "Priority set to {new}: the next freed slots go by it (tasks already sent "
        "are not affected)."
    ),
    "approved": "Approved: the batch's tasks are sent now.",
    "resumed": "Resumed: the batch's tasks are sent again, within its cap.",
    "not_held": "The batch was not held for that reason.",
    "cancel": (
        "Cancelled {new} tasks that were never sent. Tasks already at Kling (it "
        "has no cancel) or being sent run on and stay tracked."
    ),
}


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ms"] = data.fmt_ms
    env.filters["secs"] = data.fmt_s
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False)
    env.filters["segment"] = segment
    return env


def segment(name: str) -> str:
    """A batch name as one URL path segment: ``/``, ``?``, ``#``, ``%`` encoded.

    The routes take the rest of the path (``{ref:path}``), which the server has
    already decoded, so any name comes back whole.
    """
    return quote(name, safe="")


def install_dashboard(
    app: FastAPI,
    store: Store,
    dashboard: Dashboard,
    clock: Clock,
    account: Account | None = None,
) -> None:
    """Add the dashboard's routes and static files to ``app``; ``account``: the
    process's packs (default: the last figures any process saved in the store)."""
    view = _View(_environment(), store, dashboard, clock, account)
    dashboard.window.figures(clock.now(), store.reports.counter_totals())
    app.state.dashboard = dashboard
    app.mount("/static", StaticFiles(directory=_HERE / "static"), name="static")
    app.include_router(_Pages(view).router())
    app.include_router(_Session(view).router())
    app.include_router(_Actions(view).router())


class _View:
    """What every route renders with: the templates, the store, the clock."""

    def __init__(
        self,
        env: jinja2.Environment,
        store: Store,
        dashboard: Dashboard,
        clock: Clock,
        account: Account | None,
    ) -> None:
        self.env = env
        self.store = store
        self.dashboard = dashboard
        self.clock = clock
        self.account = account or Account(clock=clock, store=store)

    def html(
        self, name: str, request: Request, ctx: dict[str, Any], status: int = 200
    ) -> Response:
        ctx = ctx | {
            "protected": self.dashboard.protected,
            "can_act": self.dashboard.signed_in(request),
        }
        body = self.env.get_template(name).render(**ctx)
        return HTMLResponse(body, status_code=status, headers=_headers())

    def guard(self, request: Request) -> Response | None:
        """A login page when the dashboard wants a token the request lacks."""
        if self.dashboard.protected and not self.dashboard.signed_in(request):
            return self.html("login.html", request, _LOGIN | {"failed": False}, 401)
        return None

    def now_ms(self) -> int:
        return to_ms(self.clock.now())


class _Pages:
    """The read-only routes: pages, file previews and the live event stream."""

    def __init__(self, view: _View) -> None:
        self.view = view
        self.store = view.store

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/", self.overview, methods=["GET"])
        router.add_api_route("/batches/{ref:path}", self.batch_page, methods=["GET"])
        router.add_api_route("/tasks/{ref}", self.task_page, methods=["GET"])
        router.add_api_route("/files/{download_id}", self.preview, methods=["GET"])
        router.add_api_route("/events", self.events, methods=["GET"])
        return router

    def overview(self, request: Request, fragment: bool = False) -> Response:
        if (denied := self.view.guard(request)) is not None:
            return denied
        store = self.store
        mark = join_mark(store.reports.change_mark())
        now = self.view.now_ms()
        summaries = store.reports.batch_summaries()
        batches = [
            _batch_card(b, summaries.get(b.id), now)
            for b in reversed(store.tasks.batches())
        ]
        ctx = {
            "title": "Batches",
            "mark": mark,
            "stream": "/events",
            "batches": batches,
            "slots": {
                "used": store.reports.slots_in_use(),
                "of": self.view.dashboard.slots,
            },
            "requests": self.view.dashboard.window.figures(
                self.view.clock.now(), store.reports.counter_totals()
            ),
            "workers": _workers(store, now),
            "pools": _pools(store, now),
            "account": data.packs_view(self.view.account.latest(), now),
        }
        name = "_overview.html" if fragment else "overview.html"
        return self.view.html(name, request, ctx)

    def batch_page(  # noqa: PLR0917 - query parameters
        self,
        request: Request,
        ref: str,
        status: str = "",
        fragment: bool = False,
        done: str = "",
        new: str = "",
    ) -> Response:
        if (denied := self.view.guard(request)) is not None:
            return denied
        store = self.store
        batch = _batch(store, ref)
        mark = join_mark(store.reports.change_mark(batch_id=batch.id))
        now = self.view.now_ms()
        counts = store.tasks.count_by_status(batch.id)
        wanted = [s for s in data.STATUS_ORDER if s.value == status]
        rows = store.tasks.tasks(batch.id, statuses=wanted or None)
        files: dict[int, list[Any]] = {}
        for f in store.downloads.download_rows(batch.id):
            files.setdefault(f.task_id, []).append(f)
        views = [data.task_view(r, files.get(r.id, []), now) for r in rows[:_MAX_ROWS]]
        previews = [v for view in views for v in view["videos"]][-12:]
        report = store.reports.report(batch.id)
        ctx = {
            "title": f"Batch {batch.name}",
            "mark": mark,
            "stream": f"/events?batch={batch.id}",
            "batch": batch,
            "total": sum(counts.values()),
            "counts": counts,
            "bar": data.bar(counts),
            "statuses": [s.value for s in data.STATUS_ORDER if counts.get(s)],
            "status": status if wanted else "",
            "tasks": views,
            "shown_of": len(rows),
            "histogram": data.histogram(store.reports.processing_seconds(batch.id)),
            "report": report,
            "previews": previews,
            "note": _NOTES.get(done, "").format(new=new) if done else "",
            "can_download": self.view.dashboard.downloads is not None,
            "spend": store.spend.summary(batch.id),
            "state": BatchState(batch.state).label if batch.state else "",
        }
        name = "_batch.html" if fragment else "batch.html"
        return self.view.html(name, request, ctx)

    def task_page(self, request: Request, ref: str, fragment: bool = False) -> Response:
        if (denied := self.view.guard(request)) is not None:
            return denied
        store = self.store
        row = _task(store, ref)
        mark = join_mark(store.reports.change_mark(task_id=row.id))
        batch = store.tasks.batch(row.batch_id)
        files = store.downloads.download_rows(task_id=row.id)
        ctx = {
            "title": f"Task {row.seq} of {batch.name if batch else row.batch_id}",
            "mark": mark,
            "stream": f"/events?task={row.id}",
            "task": row,
            "batch": batch,
            "view": data.task_view(row, files, self.view.now_ms()),
            "events": data.timeline(
                store.outbox.events(task_id=row.id, limit=2000), files
            ),
            "request_body": data.redact(row.body),
            "result": data.redact(row.result) if row.result else None,
            "files": files,
            "expiry": data.expiry_ms(row, files),
        }
        name = "_task.html" if fragment else "task.html"
        return self.view.html(name, request, ctx)

    def preview(self, request: Request, download_id: int) -> Response:
        if (denied := self.view.guard(request)) is not None:
            return denied
        path = _safe_file(self.store, download_id)
        media = _MEDIA.get(path.suffix.lower(), "application/octet-stream")
        return FileResponse(
            path, media_type=media, headers={"Cache-Control": "private, max-age=60"}
        )

    async def events(
        self, request: Request, batch: int | None = None, task: int | None = None
    ) -> Response:
        if (denied := self.view.guard(request)) is not None:
            return denied
        last = request.headers.get("last-event-id")
        return StreamingResponse(
            event_stream(self.store, self.view.dashboard, last, batch, task),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )


class _Session:
    """Signing in with the dashboard's token, and out."""

    def __init__(self, view: _View) -> None:
        self.view = view
        self.dashboard = view.dashboard

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/login", self.login_page, methods=["GET"])
        router.add_api_route("/login", self.login, methods=["POST"])
        router.add_api_route("/logout", self.logout, methods=["POST"])
        return router

    def login_page(self, request: Request, token: str = "") -> Response:
        if token and self.dashboard.token_matches(token):
            return _signed(self.dashboard, request, "/")
        failed = bool(token)
        ctx = _LOGIN | {"failed": failed}
        return self.view.html("login.html", request, ctx, 401 if failed else 200)

    async def login(self, request: Request) -> Response:
        _same_origin(request)
        form = parse_qs((await request.body()).decode(errors="replace"))
        token = (form.get("token") or [""])[0]
        if self.dashboard.token_matches(token):
            return _signed(self.dashboard, request, "/")
        return self.view.html("login.html", request, _LOGIN | {"failed": True}, 401)

    def logout(self, request: Request) -> Response:
        _same_origin(request)
        out = RedirectResponse("/login", status_code=303)
        out.delete_cookie(COOKIE, path="/")
        return out


class _Actions:
    """What a signed-in user may do: retry failed tasks, cancel unsent, download."""

    def __init__(self, view: _View) -> None:
        self.view = view
        self.store = view.store
        self.dashboard = view.dashboard

    def router(self) -> APIRouter:
        router = APIRouter(include_in_schema=False)
        router.add_api_route("/actions/retry/{ref:path}", self.retry, methods=["POST"])
        router.add_api_route(
            "/actions/cancel/{ref:path}", self.cancel, methods=["POST"]
        )
        router.add_api_route(
            "/actions/download/{ref:path}", self.download_now, methods=["POST"]
        )
        router.add_api_route(
            "/actions/priority/{ref:path}", self.set_priority, methods=["POST"]
        )
        router.add_api_route(
            "/actions/approve/{ref:path}", self.approve, methods=["POST"]
        )
        router.add_api_route(
            "/actions/resume/{ref:path}", self.resume, methods=["POST"]
        )
        return router

    def approve(self, request: Request, ref: str) -> Response:
        """Let a batch awaiting approval be sent (as ``klingmon approve``)."""
        self.may_act(request)
        batch = _batch(self.store, ref)
        done = self.store.spend.release(batch.id, state=BatchState.AWAITING_APPROVAL)
        logger.info("dashboard.approve", extra={"batch": batch.id, "done": done})
        self._wake()
        return _back(batch, "approved" if done else "not_held")

    async def resume(self, request: Request, ref: str) -> Response:
        """Let a batch paused by its budget go on, with the cap the form gives."""
        self.may_act(request)
        form = parse_qs((await request.body()).decode(errors="replace"))
        raw = (form.get("max_units") or [""])[0].strip()
        try:
            cap = float(raw) if raw else None
        except ValueError:
            raise HTTPException(422, detail="max_units must be a number") from None
        if cap is not None and not cap >= 0:
            raise HTTPException(422, detail="max_units must be >= 0")
        batch = await run_in_threadpool(_batch, self.store, ref)
        if cap is not None:
            await run_in_threadpool(self.store.spend.set_cap, batch.id, cap)
        done = await run_in_threadpool(
            functools.partial(
                self.store.spend.release, batch.id, state=BatchState.PAUSED_BUDGET
            )
        )
        logger.info("dashboard.resume", extra={"batch": batch.id, "done": done})
        self._wake()
        return _back(batch, "resumed" if done else "not_held")

    def _wake(self) -> None:
        self.store.fleet.notify()
        if self.dashboard.wake is not None:
            self.dashboard.wake()

    def may_act(self, request: Request) -> None:
        _same_origin(request)
        if not self.dashboard.protected:
            raise HTTPException(
                403, detail="read-only dashboard: start klingmon serve with --token"
            )
        if not self.dashboard.signed_in(request):
            raise HTTPException(401, detail="missing or wrong token")

    def retry(self, request: Request, ref: str) -> Response:
        self.may_act(request)
        store = self.store
        batch = _batch(store, ref)
        try:
            # As the CLI's retry: content-moderation failures would fail again.
            new = retry_batch(
                store,
                batch.id,
                to_ms(self.view.clock.now()),
                name=_free_name(store, f"{batch.name}-retry"),
                skip_moderated=True,
            )
        except KlingmonError:
            return _back(batch, "nothing")
        logger.info("dashboard.retry", extra={"batch": batch.id, "new": new.id})
        if self.dashboard.wake is not None:
            self.dashboard.wake()
        return _back(batch, "retry", new.name)

    def cancel(self, request: Request, ref: str) -> Response:
        self.may_act(request)
        store = self.store
        batch = _batch(store, ref)
        done = store.tasks.cancel_tasks(
            store.tasks.task_ids_of_batch(batch.id), self.view.now_ms()
        )
        logger.info(
            "dashboard.cancel",
            extra={"batch": batch.id, "cancelled": len(done.cancelled)},
        )
        return _back(batch, "cancel", str(len(done.cancelled)))

    async def set_priority(self, request: Request, ref: str) -> Response:
        """The batch's new priority, from the form: the next claims go by it."""
        self.may_act(request)
        form = parse_qs((await request.body()).decode(errors="replace"))
        value = _priority_of((form.get("priority") or [""])[0])
        batch = await run_in_threadpool(_batch, self.store, ref)
        await run_in_threadpool(
            lambda: self.store.tasks.set_priority(
                batch.id, value, self.view.now_ms(), by="dashboard"
            )
        )
        logger.info("dashboard.priority", extra={"batch": batch.id, "new": value})
        if self.dashboard.wake is not None:
            self.dashboard.wake()
        return _back(batch, "priority", str(value))

    async def download_now(self, request: Request, ref: str) -> Response:
        self.may_act(request)
        batch = await run_in_threadpool(_batch, self.store, ref)
        settings = self.dashboard.downloads
        if settings is None:
            raise HTTPException(409, detail="downloads are not configured")
        running = self.dashboard.running.get(batch.id)
        if running is not None and not running.done():
            return _back(batch, "busy")
        job = asyncio.create_task(
            _download(self.store, settings, self.view.clock, batch.id)
        )
        self.dashboard.running[batch.id] = job
        logger.info("dashboard.download", extra={"batch": batch.id})
        return _back(batch, "download")


def _batch_card(b: BatchRow, s: BatchSummary | None, now: int) -> dict[str, Any]:
    """One batch's line on the overview."""
    counts = s.counts if s else {}
    return {
        "id": b.id,
        "name": b.name,
        "created": b.created_ms,
        "priority": b.priority,
        "total": sum(counts.values()),
        "done": sum(n for st, n in counts.items() if st in TERMINAL),
        "failed": sum(counts.get(st, 0) for st in data.FAILED),
        "stuck": s.stuck if s else 0,
        "units": s.units if s else 0.0,
        "cash": s.cash if s else {},
        "state": BatchState(b.state).label if b.state else "",
        "eta": data.batch_eta(s, now) if s else None,
        "bar": data.bar(counts),
        "files": s.files if s else {},
    }


async def _download(
    store: Store, settings: DownloadSettings, clock: Clock, batch_id: int
) -> None:
    downloader = Downloader(store, settings, clock=clock)
    try:
        await downloader.run(batch_id=batch_id)
    except Exception as exc:  # noqa: BLE001 - a background job reports, never raises
        logger.warning("dashboard.download_failed", extra={"error": type(exc).__name__})
    finally:
        await downloader.aclose()


def _headers() -> dict[str, str]:
    return {
        "Content-Security-Policy": _CSP,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Cache-Control": "no-store",
    }


def _same_origin(request: Request) -> None:
    """Refuse a cross-site form post (the cookie is SameSite=Strict as well)."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, detail="cross-site request refused")


def _signed(dashboard: Dashboard, request: Request, to: str) -> Response:
    out = RedirectResponse(to, status_code=303)
    out.set_cookie(
        COOKIE,
        dashboard.session(),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return out


def _back(batch: BatchRow, done: str, new: str = "") -> Response:
    where = f"/batches/{segment(batch.name)}?done={done}"
    if new:
        where += f"&new={quote(new, safe='')}"
    return RedirectResponse(where, status_code=303)


def _priority_of(text: str) -> int:
    """A priority typed in the form, or 400 saying what is wrong with it."""
    try:
        value = int(text.strip())
    except ValueError:
        raise HTTPException(400, detail="priority must be an integer") from None
    problem = priority_problem(value)
    if problem is not None:
        raise HTTPException(400, detail=problem)
    return value


def _free_name(store: Store, base: str) -> str:
    name, n = base, 1
    while store.tasks.batch(name) is not None:
        n += 1
        name = f"{base}-{n}"
    return name


def _batch(store: Store, ref: str) -> BatchRow:
    found = store.tasks.batch(ref) if len(ref) < 200 else None
    if found is None:
        raise HTTPException(404, detail="no such batch")
    return found


def _task(store: Store, ref: str) -> TaskRow:
    row = (
        store.tasks.task(int(ref))
        if ref.isascii() and ref.isdigit() and len(ref) < 18
        else None
    )
    row = row or (store.tasks.task(ref) if len(ref) < 200 else None)
    if row is None:
        raise HTTPException(404, detail="no such task")
    return row


def _safe_file(store: Store, download_id: int) -> Path:
    """The downloaded file of row ``download_id``, where the store says it landed.

    The path comes from the store only (the request names a row id, never a
    path): a done row's local file, a regular file (not a link) still of the
    recorded size, in whichever folder the run that fetched it used.
    """
    row = store.downloads.download_row(download_id)
    if row is None or row.status != "done" or not row.dest or row.size is None:
        raise HTTPException(404, detail="no such file")
    if "://" in row.dest and not row.dest.startswith("file://"):
        raise HTTPException(404, detail="the file is not on this machine")
    path = Path(row.dest.removeprefix("file://")).expanduser()
    try:
        found = path.lstat()
    except OSError:
        raise HTTPException(404, detail="no such file") from None
    if not stat.S_ISREG(found.st_mode) or found.st_size != row.size:
        raise HTTPException(404, detail="no such file")
    return path


def _pools(store: Store, now_ms: int) -> list[dict[str, Any]]:
    """Each concurrency pool in use: slots held of its limit, tasks queued."""
    alive = [w.info for w in store.fleet.workers(now_ms) if w.alive]
    return [
        {
            "pool": f.pool,
            "used": f.held,
            "limit": f.limit,
            "tasks": f.tasks,
            "queued": f.queued,
        }
        for f in store.reports.pool_figures(now_ms, alive)
    ]


def _workers(store: Store, now_ms: int) -> dict[str, Any]:
    """Workers alive: the heartbeat table when the store has one, else live leases."""
    listing = getattr(store, "workers", None)
    if callable(listing):
        rows = listing(now_ms)
        alive = [w for w in rows if w.alive]
        return {"alive": len(alive), "known": len(rows), "source": "heartbeats"}
    return {
        "alive": len(store.fleet.live_lease_owners(now_ms)),
        "known": None,
        "source": "leases",
    }
