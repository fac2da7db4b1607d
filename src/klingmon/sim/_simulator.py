"""The simulated Kling account: tasks, slots, faults, scripts and counters.

All state sits behind one lock, since :class:`~klingmon.testing.SimServer` serves
from a background thread while the test thread reads counters and sets faults.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import random
import threading
import uuid
from collections import Counter, defaultdict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from klingmon._clock import SystemClock
from klingmon.sim._answers import Answer, error, ok, ok_items
from klingmon.sim._app import build_app
from klingmon.sim._callbacks import CallbackDispatcher, Snapshot
from klingmon.sim._config import Faults, SimConfig
from klingmon.sim._media import media_bytes
from klingmon.sim._media import media_sha256 as _sha256
from klingmon.sim._tasks import SimTask, draw_plan, new_video_ids
from klingmon.sim._transports import InProcessTransport, SyncInProcessTransport
from klingmon.sim._validate import MESSAGES, validate_create

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from starlette.applications import Starlette

    from klingmon._clock import Clock

__all__ = ["ROUTES", "Scripted", "Simulator"]

#: ``media``: result files (``any`` covers the API routes only).
ROUTES = frozenset({"create", "get", "list", "any", "media"})

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Scripted:
    status: int
    code: int | None
    body: str | None
    drop: bool
    #: Media only: the Content-Type sent ("" sends none; None: the usual video/mp4).
    content_type: str | None = None
    #: Media only: a Content-Range sent whatever the request asked for; the body is
    #: then that span of the real file.
    content_range: str | None = None

    def answer(self) -> Answer | None:
        """The forced answer, or None to let the request through (a bare 2xx)."""
        if self.body is not None:
            try:
                json.loads(self.body)
            except ValueError:
                return Answer(self.status, raw=self.body.encode(), malformed=True)
            return Answer(self.status, raw=self.body.encode())
        if self.code is None and self.status < 400:
            return None
        code = self.code if self.code is not None else _code_for(self.status)
        return error(code, MESSAGES.get(code), self.status)


_CODE_FOR_STATUS = {401: 1000, 403: 1103, 404: 1203, 429: 1302, 503: 5001, 504: 5002}


def _code_for(status: int) -> int:
    """The Kling code a bare scripted status most likely comes with."""
    return _CODE_FOR_STATUS.get(status, 5000 if status >= 500 else 1200)


class Simulator:
    """A local Kling account speaking the legacy API (reference §11).

    Task timings are drawn from ``random.Random`` seeded by ``config.seed`` and
    read from the injected clock, so a run is repeatable. On a
    :class:`~klingmon.testing.VirtualClock` the callback dispatcher's sleeps move
    the clock: pending callbacks pull virtual time forward to their due times.
    """

    def __init__(
        self,
        config: SimConfig = SimConfig(),
        *,
        clock: Clock | None = None,
        callback_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.RLock()
        seed = config.seed
        self._rng = random.Random(f"{seed}:tasks")
        self._ids = random.Random(f"{seed}:ids")
        self._fault_rng = random.Random(f"{seed}:faults")
        self._callback_rng = random.Random(f"{seed}:callbacks")
        self._tasks: dict[str, SimTask] = {}
        self._by_endpoint: defaultdict[str, list[str]] = defaultdict(list)
        self._by_external: dict[str, str] = {}
        self._by_video: dict[str, str] = {}
        self._active: set[str] = set()
        self._requests: Counter[str] = Counter()
        self._by_route: Counter[str] = Counter()
        self._creates_per_external: Counter[str] = Counter()
        self._duplicates_per_external: Counter[str] = Counter()
        self._max_in_flight = 0
        self._scripts: dict[str, deque[Scripted]] = {r: deque() for r in ROUTES}
        self.callbacks = CallbackDispatcher(
            clock=self.clock,
            transport=callback_transport,
            snapshot=self._snapshot,
            secret=lambda: self.config.webhook_secret,
        )
        self.app: Starlette = build_app(self)

    def __repr__(self) -> str:
        return f"Simulator({self.config!r})"

    # -- public controls -------------------------------------------------------

    def transport(self) -> httpx.AsyncBaseTransport:
        """An in-process transport; a dropped answer raises RemoteProtocolError."""
        return InProcessTransport(self)

    def sync_transport(self) -> httpx.BaseTransport:
        """The same for ``httpx.Client``, on a private event-loop thread; close it."""
        return SyncInProcessTransport(self)

    def set_faults(self, faults: Faults) -> None:
        with self._lock:
            self.config = dataclasses.replace(self.config, faults=faults)

    def script(
        self,
        route: str,
        *,
        status: int,
        code: int | None = None,
        body: str | None = None,
        times: int = 1,
        drop: bool = False,
        content_type: str | None = None,
        content_range: str | None = None,
    ) -> None:
        """Force the next ``times`` answers on ``route``; wins over random faults.

        On ``media``: ``body`` (with ``content_type``) replaces the file, as an error
        page served with 200 would; ``content_range`` forces a partial answer.
        """
        if route not in ROUTES:
            raise ValueError(f"route must be one of {sorted(ROUTES)}")
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            scripted = Scripted(status, code, body, drop, content_type, content_range)
            self._scripts[route].extend([scripted] * times)

    def media_sha256(self, url_path: str) -> str:
        """SHA-256 of the file served at ``url_path`` (a path or a full URL)."""
        task_id, index = _parse_media_path(urlsplit(url_path).path)
        return _sha256(task_id, index, self.config.media_size)

    def counters(self) -> dict[str, Any]:
        """What happened so far; the JSON of ``GET /admin/counters``."""
        with self._lock:
            now = self.clock.now()
            tasks = {
                task.task_id: {
                    "external_task_id": task.external_task_id,
                    "endpoint": task.endpoint,
                    "status": task.status(now),
                    "transitions": [list(t) for t in task.transitions(now)],
                    "urls": task.urls() if task.status(now) == "succeed" else [],
                    # Drawn to never finish (Faults.stuck_rate): the truth to check
                    # a monitor's stuck flags against.
                    "stuck": task.outcome == "stuck",
                }
                for task in self._tasks.values()
            }
            return {
                "requests": dict(self._requests),
                "requests_by_route": dict(self._by_route),
                # Every create that reached the account, refused duplicates included;
                # ``tasks`` holds what was created (and billed).
                "creates_per_external_id": dict(self._creates_per_external),
                "duplicate_creates_per_external_id": dict(
                    self._duplicates_per_external
                ),
                "max_in_flight": self._max_in_flight,
                "in_flight": self._in_flight(now),
                "answers_1303": sum(
                    n for k, n in self._requests.items() if k.endswith("-1303")
                ),
                "answers_1302": sum(
                    n for k, n in self._requests.items() if k.endswith("-1302")
                ),
                "callbacks": dict(self.callbacks.stats),
                "tasks": tasks,
            }

    async def start(self) -> None:
        """Start the callback dispatcher in the running event loop."""
        await self.callbacks.start()

    async def aclose(self) -> None:
        await self.callbacks.stop()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Simulator]:
        """The callback dispatcher runs inside this block (the app's lifespan)."""
        await self.start()
        try:
            yield self
        finally:
            await self.aclose()

    # -- used by the app -------------------------------------------------------

    def record(self, route: str, outcome: str) -> None:
        with self._lock:
            self._requests[f"{route} {outcome}"] += 1
            self._by_route[route] += 1
        logger.debug("sim.answer", extra={"route": route, "outcome": outcome})

    def pop_script(self, route: str) -> Scripted | None:
        with self._lock:
            for key in (route,) if route == "media" else (route, "any"):
                if self._scripts[key]:
                    return self._scripts[key].popleft()
        return None

    def draw(self, rate: float) -> bool:
        if rate <= 0:
            return False
        with self._lock:
            return self._fault_rng.random() < rate

    def random_fault(self) -> Answer | None:
        """A 1302 or 5xx drawn from the fault rates, before any work is done."""
        faults = self.config.faults
        if self.draw(faults.rate_limit_rate):
            return error(1302)
        if self.draw(faults.error_5xx_rate):
            with self._lock:
                code = self._fault_rng.choice((5000, 5001, 5002))
            return error(code)
        return None

    def is_endpoint(self, path: str) -> bool:
        with self._lock:
            return path in self._by_endpoint

    def create(self, endpoint: str, body: dict[str, Any], base_url: str) -> Answer:
        ext = body.get("external_task_id")
        with self._lock:
            if ext is not None:
                self._creates_per_external[str(ext)] += 1
        message = validate_create(endpoint, body)
        if message is not None:
            return error(1201, message)
        with self._lock:
            if ext is not None and str(ext) in self._by_external:
                # Kling's answer to a reused id: 400/1201, nothing created or billed.
                self._duplicates_per_external[str(ext)] += 1
                return error(1201, "external_task_id already exists: it must be unique")
            now = self.clock.now()
            need = _count(body) if endpoint.startswith("/v1/images/") else 1
            in_flight = self._in_flight(now)
            if in_flight + need > self.config.slots:
                return error(1303)
            task = self._new_task(endpoint, body, base_url, now, need)
            self._max_in_flight = max(self._max_in_flight, in_flight + need)
            self._plan_callbacks(task)
        return ok(task.created_view())

    def query(self, endpoint: str, ident: str) -> Answer:
        with self._lock:
            task_id = ident if ident in self._tasks else self._by_external.get(ident)
            task = self._tasks.get(task_id) if task_id is not None else None
            if task is None or task.endpoint != endpoint:
                return error(1203, "task not found")
            return ok(task.view(self.clock.now()))

    def list_tasks(self, endpoint: str, page: int, size: int) -> Answer:
        with self._lock:
            now = self.clock.now()
            ids = self._by_endpoint.get(endpoint, [])
            order = self.config.list_order
            first, last = (page - 1) * size, page * size
            if order == "random":
                tasks = sorted((self._tasks[t] for t in ids), key=lambda t: t.order_key)
                chosen = tasks[first:last]
            else:  # slice the ids first: a page costs its own size, not the account's
                picked = ids[::-1][first:last] if order == "newest" else ids[first:last]
                chosen = [self._tasks[t] for t in picked]
            return ok_items([t.view_json(now) for t in chosen])

    def media(self, task_id: str, index: int) -> bytes | None:
        """The bytes of a result file, or None when there is no such file (yet)."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.status(self.clock.now()) != "succeed":
                return None
            if not 0 <= index < len(task.video_ids):
                return None
        return media_bytes(task_id, index, self.config.media_size)

    # -- internals -------------------------------------------------------------

    def _in_flight(self, now: float) -> int:
        self._active = {t for t in self._active if self._tasks[t].in_flight(now)}
        return sum(self._tasks[t].slots for t in self._active)

    def _new_id(self) -> str:
        while True:
            if self.config.task_id_style == "base64":
                raw = self._ids.randbytes(16)
                task_id = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            else:
                task_id = str(self._ids.randrange(8 * 10**17, 9 * 10**17))
            if task_id not in self._tasks:
                return task_id

    def _new_task(
        self, endpoint: str, body: dict[str, Any], base_url: str, now: float, slots: int
    ) -> SimTask:
        faults = self.config.faults
        plan = draw_plan(
            self._rng,
            endpoint=endpoint,
            body=body,
            created=now,
            time_scale=self.config.time_scale,
            fail_rate=faults.fail_rate,
            stuck_rate=faults.stuck_rate,
        )
        task = SimTask(
            task_id=self._new_id(),
            endpoint=endpoint,
            body=body,
            base_url=(self.config.public_url or base_url).rstrip("/"),
            created=now,
            video_ids=new_video_ids(self._ids, slots),
            slots=slots,
            **plan,
        )
        if endpoint.endswith("/video-extend"):
            task.parent_video, task.parent_model = self._parent(str(body["video_id"]))
        self._tasks[task.task_id] = task
        self._by_endpoint[endpoint].append(task.task_id)
        self._active.add(task.task_id)
        if task.external_task_id is not None:
            self._by_external[task.external_task_id] = task.task_id
        for video_id in task.video_ids:
            self._by_video[video_id] = task.task_id
        return task

    def _parent(self, video_id: str) -> tuple[dict[str, str], str | None]:
        parent = self._tasks.get(self._by_video.get(video_id, ""))
        if parent is None:
            return {"id": video_id, "duration": "5.1"}, None
        index = parent.video_ids.index(video_id)
        info = {
            "id": video_id,
            "url": parent.urls()[index],
            "duration": parent.duration(),
        }
        return info, parent.body.get("model_name") or parent.parent_model

    def _plan_callbacks(self, task: SimTask) -> None:
        if not task.body.get("callback_url"):
            return
        faults, rng = self.config.faults, self._callback_rng
        events = [task.processing_at]
        if task.ends_at is not None:
            events.append(task.ends_at)
        delay = faults.callback_delay / self.config.time_scale
        reorder = len(events) == 2 and rng.random() < faults.callback_reorder_rate
        for i, at in enumerate(events):
            due = at + delay
            if reorder and i == 0:
                due = events[-1] + delay + 0.001
            if rng.random() < faults.callback_drop_rate:
                self.callbacks.stats["dropped"] += 1
                continue
            copies = 2 if rng.random() < faults.callback_duplicate_rate else 1
            msg_id = f"msg_{uuid.UUID(int=rng.getrandbits(128), version=4).hex}"
            self.callbacks.schedule(
                task.task_id, at=at, due=due, msg_id=msg_id, copies=copies
            )

    def _snapshot(self, task_id: str, at: float) -> Snapshot:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None:
                return None
            return str(task.body["callback_url"]), task.view(at)


def _count(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    return n if isinstance(n, int) and 1 <= n <= 9 else 1


def _parse_media_path(path: str) -> tuple[str, int]:
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "media" or not parts[2].endswith(".mp4"):
        raise ValueError("not a result file path: /media/<task_id>/<n>.mp4")
    index = parts[2].removesuffix(".mp4")
    if not index.isdigit():
        raise ValueError("not a result file path: /media/<task_id>/<n>.mp4")
    return parts[1], int(index)
