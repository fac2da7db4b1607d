"""The simulated Kling account: tasks, slots, faults, scripts and counters.

All state sits behind one lock, since :class:`~klingmon.testing.SimServer` serves
from a background thread while the test thread reads counters and sets faults.
"""

from __future__ import annotations

import base64
import bisect
import dataclasses
import hashlib
import json
import logging
import random
import re
import threading
import uuid
from collections import Counter, defaultdict, deque
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from klingmon._clock import SystemClock, to_ms
from klingmon.sim._answers import Answer, error, ok, ok_items
from klingmon.sim._app import build_app
from klingmon.sim._callbacks import CallbackDispatcher, Snapshot
from klingmon.sim._config import Faults, SimConfig
from klingmon.sim._ledger import Charge, Ledger
from klingmon.sim._media import file_bytes
from klingmon.sim._newgen import (
    NEW_STATUS,
    created_view,
    family_of,
    file_names,
    image_count,
    output_kind,
    pack_type,
    plan_body,
    product_type,
    signed_url,
    task_object,
    units,
    validate_new,
)
from klingmon.sim._pools import Pools, legacy_pool, pool_label
from klingmon.sim._query import Sweep, next_cursor
from klingmon.sim._tasks import SimTask, draw_plan, new_video_ids, price
from klingmon.sim._transports import InProcessTransport, SyncInProcessTransport
from klingmon.sim._validate import MESSAGES, validate_create

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    from starlette.applications import Starlette

    from klingmon._clock import Clock

__all__ = ["RETIRED_MESSAGE", "ROUTES", "Scripted", "Simulator"]

#: ``media``: result files (``any`` covers the API routes only). ``create`` is
#: both generations' creates; ``tasks_get`` / ``tasks_post`` are ``GET /tasks`` and
#: ``POST /tasks``; ``costs`` is ``GET /account/costs``.
ROUTES = frozenset(
    {"create", "get", "list", "any", "media", "tasks_get", "tasks_post", "costs"}
)
#: Seen live on a retired legacy endpoint (its code is UNCONFIRMED: 400/1200 here).
RETIRED_MESSAGE = "This API is no longer available"
_MEDIA_NAME = re.compile(r"^\d+(-wm)?\.(mp4|png|mp3|wav)$")
_PACKAGE = {"video": "video", "image": "image", "audio": "audio", "voice": "audio"}

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
    """A local Kling account speaking both API generations over one task store.

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
        self._requests: Counter[str] = Counter()
        self._by_route: Counter[str] = Counter()
        self._creates_per_external: Counter[str] = Counter()
        self._duplicates_per_external: Counter[str] = Counter()
        self._pools = Pools()
        #: The legacy side's pools seen so far (``kling-v1/video``, ...).
        self._legacy_pools: set[str] = set()
        self._ledger = Ledger(config.packs, self.clock.now())
        self._charges: dict[str, Charge] = {}
        #: New-generation tasks in creation order, with their create times (ms).
        self._new_ids: list[str] = []
        self._new_created: list[int] = []
        self._url_key = hashlib.sha256(f"{seed}:urls".encode()).digest()
        self._scripts: dict[str, deque[Scripted]] = {r: deque() for r in ROUTES}
        self.callbacks = CallbackDispatcher(
            clock=self.clock,
            transport=callback_transport,
            snapshot=self._snapshot,
            secret=self._webhook_secrets,
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
        task_id, name = _parse_media_path(urlsplit(url_path).path)
        data = file_bytes(task_id, name, self.config.media_size)
        return hashlib.sha256(data).hexdigest()

    def counters(self) -> dict[str, Any]:
        """What happened so far; the JSON of ``GET /admin/counters``."""
        with self._lock:
            now = self.clock.now()
            tasks = {
                task.task_id: self._task_counters(task, now)
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
                # Legacy: the most slots ever held in any one of its pools (a
                # one-model workload: its pool), and the slots its tasks hold now.
                "max_in_flight": self._pools.most(self._legacy_pools),
                "in_flight": self._in_flight(now),
                # Every pool of both generations: ``<model>/<video|image>``.
                "in_flight_per_pool": self._pools.snapshot(self._tasks, now),
                "max_in_flight_per_pool": dict(self._pools.max),
                "answers_1303_per_pool": dict(self._pools.refused),
                "packs_remaining": self._ledger.remaining_by_name(now),
                # The charge ledger: units charged so far (tasks that succeeded),
                # and what the tasks created so far are charged once they succeed.
                "units_charged": self._ledger.charged(now),
                "units_committed": self._ledger.committed(),
                "charges_per_external_id": self._charges_by_external(now),
                "answers_1303": sum(
                    n for k, n in self._requests.items() if k.endswith("-1303")
                ),
                "answers_1302": sum(
                    n for k, n in self._requests.items() if k.endswith("-1302")
                ),
                "callbacks": dict(self.callbacks.stats),
                "tasks": tasks,
            }

    def holds(self, task_id: str) -> bool:
        """Whether this account created the task ``task_id``."""
        with self._lock:
            return task_id in self._tasks

    @property
    def dispatching(self) -> bool:
        """Whether the callback dispatcher runs."""
        return self.callbacks.running

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
        """A legacy create (``/v1/...``, ``model_name`` in the body)."""
        ext = body.get("external_task_id")
        self._count_create(ext)
        if self._is_retired(endpoint, body.get("model_name")):
            return error(1200, RETIRED_MESSAGE)
        message = validate_create(endpoint, body)
        if message is not None:
            return error(1201, message)
        with self._lock:
            if self._is_duplicate(ext):
                return error(1201, "external_task_id already exists: it must be unique")
            now = self.clock.now()
            pool, pack = legacy_pool(endpoint, body)
            need = _count(body) if pack == "image" else 1
            size = self.config.image_slots if pack == "image" else self.config.slots
            self._legacy_pools.add(pool)
            held = self._pools.admit(pool, need, size, self._tasks, now)
            if held is None:
                return error(1303)
            task = self._new_task(endpoint, body, base_url, now, need, pool=pool)
            self._pools.add(pool, task.task_id, held)
            package = (
                "image" if task.is_image else "audio" if task.is_audio else "video"
            )
            task.units = price(endpoint, body, task.parent_model, self.config.prices)
            self._charge(task, package, float(task.units))
            self._plan_callbacks(task)
        return ok(task.created_view())

    def is_new_path(self, path: str) -> bool | None:
        """How to route ``path``: a known or retired model (True), an unknown model
        of a known family (False, refused with 1201), or no such route (None)."""
        if path in self.config.new_models or path in self.config.retired:
            return True
        parsed = family_of(path)
        if parsed is None:
            return None
        families = {p.strip("/").split("/")[0] for p in self.config.new_models}
        return False if parsed[0] in families else None

    def create_new(self, path: str, body: dict[str, Any], base_url: str) -> Answer:
        """A new-generation create: ``POST /<family>/<model>``."""
        parsed = family_of(path)
        if parsed is None:
            return error(1201, "model is not supported")
        family, model = parsed
        options = body.get("options")
        ext = options.get("external_task_id") if isinstance(options, dict) else None
        self._count_create(ext)
        if self._is_retired(path, model):
            return error(1200, RETIRED_MESSAGE)
        if path not in self.config.new_models:
            return error(1201, "model is not supported")
        message = validate_new(family, model, body)
        if message is not None:
            return error(1201, message)
        return self._admit_new(path, family, model, body, base_url, ext)

    def query_ids(self, ids: list[str], *, external: bool) -> Answer:
        """``GET /tasks?task_ids=`` (or ``external_task_ids=``): unknown ids missing."""
        with self._lock:
            now, seen = self.clock.now(), set()
            out: list[dict[str, Any]] = []
            for ident in ids:
                task_id = self._by_external.get(ident) if external else ident
                task = self._tasks.get(task_id or "")
                if task is None or task.generation != "new" or task.task_id in seen:
                    continue
                seen.add(task.task_id)
                out.append(self._new_view(task, now))
        return ok(out)

    def sweep(self, query: Sweep) -> Answer:
        """``POST /tasks``: newest first within the window, by cursor."""
        with self._lock:
            now = self.clock.now()
            low = bisect.bisect_left(self._new_created, query.start_ms)
            high = bisect.bisect_right(self._new_created, query.end_ms)
            if query.position is not None:
                high = min(high, query.position)
            result: list[dict[str, Any]] = []
            position = high
            while position > low and len(result) < query.limit:
                position -= 1
                task = self._tasks[self._new_ids[position]]
                if self._matches(task, query, now):
                    result.append(self._new_view(task, now))
            more = any(
                self._matches(self._tasks[self._new_ids[i]], query, now)
                for i in range(position - 1, low - 1, -1)
            )
        if not result:
            return ok({"count": 0, "has_more": False})
        data: dict[str, Any] = {
            "result": result,
            "count": len(result),
            "has_more": more,
        }
        if more:
            data["next_cursor"] = next_cursor(query, position)
        return ok(data)

    def costs(self, name: str | None) -> Answer:
        """``GET /account/costs``: the packs, their remaining counts as of now."""
        with self._lock:
            if not self.config.packs:
                return ok({"code": 0, "msg": "success"})
            return ok(self._ledger.costs(self.clock.now(), name))

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

    def media(self, task_id: str, name: str) -> bytes | None:
        """The bytes of result file ``name``, or None when there is none (yet)."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.status(self.clock.now()) != "succeed":
                return None
            if name not in task.file_names():
                return None
        return file_bytes(task_id, name, self.config.media_size)

    # -- internals -------------------------------------------------------------

    def _in_flight(self, now: float) -> int:
        return self._pools.held(self._legacy_pools, self._tasks, now)

    def _webhook_secrets(self) -> tuple[str, ...]:
        config = self.config
        return tuple(
            s for s in (config.webhook_secret, config.webhook_secret_previous) if s
        )

    def _count_create(self, ext: object) -> None:
        with self._lock:
            if ext is not None:
                self._creates_per_external[str(ext)] += 1

    def _is_duplicate(self, ext: object) -> bool:
        """A reused external id: Kling answers 400/1201, nothing created or billed."""
        if ext is None or str(ext) not in self._by_external:
            return False
        self._duplicates_per_external[str(ext)] += 1
        return True

    def _is_retired(self, path: str, model: object) -> bool:
        retired = self.config.retired
        return path in retired or (isinstance(model, str) and model in retired)

    def _admit_new(  # noqa: PLR0917 -- a private step of create_new
        self,
        path: str,
        family: str,
        model: str,
        body: dict[str, Any],
        base_url: str,
        ext: object,
    ) -> Answer:
        kind, pack = output_kind(family), pack_type(family)
        need = image_count(body) if kind == "image" else 1
        pool = pool_label(model, pack)
        size = self.config.image_slots if pack == "image" else self.config.video_slots
        with self._lock:
            if self._is_duplicate(ext):
                return error(1201, "external_task_id already exists: it must be unique")
            now = self.clock.now()
            held = self._pools.admit(pool, need, size, self._tasks, now)
            if held is None:
                return error(1303)
            task = self._new_task(
                path, body, base_url, now, need, pool=pool, new=(family, model)
            )
            self._pools.add(pool, task.task_id, held)
            self._new_ids.append(task.task_id)
            self._new_created.append(to_ms(task.created))
            if kind in _PACKAGE:
                amount = units(family, model, body, self.config.prices)
                task.units = f"{amount:g}"
                self._charge(task, _PACKAGE[kind], amount)
            self._plan_callbacks(task)
        return ok(created_view(task))

    def _charge(self, task: SimTask, package: str, amount: float) -> None:
        if task.outcome == "succeed" and task.ends_at is not None and amount > 0:
            self._charges[task.task_id] = self._ledger.charge(
                package, amount, task.ends_at
            )

    def _charges_by_external(self, now: float) -> dict[str, float]:
        out: dict[str, float] = {}
        for task_id, charge in self._charges.items():
            ext = self._tasks[task_id].external_task_id
            if ext is not None and charge.at <= now:
                out[ext] = charge.amount
        return out

    def _matches(self, task: SimTask, query: Sweep, now: float) -> bool:
        if query.statuses and NEW_STATUS[task.status(now)] not in query.statuses:
            return False
        return not query.products or product_type(task.family) in query.products

    def _new_view(self, task: SimTask, now: float) -> dict[str, Any]:
        return task_object(task, now, self._charges.get(task.task_id), self._url_key)

    def _task_counters(self, task: SimTask, now: float) -> dict[str, Any]:
        status = task.status(now)
        done = status == "succeed"
        if task.generation == "legacy":
            urls = task.urls() if done else []
        else:
            urls = (
                [signed_url(task, n, self._url_key) for n in task.files] if done else []
            )
        charge = self._charges.get(task.task_id)
        return {
            "external_task_id": task.external_task_id,
            "endpoint": task.endpoint,
            "generation": task.generation,
            "pool": task.pool,
            "status": status,
            "transitions": [list(t) for t in task.transitions(now)],
            "urls": urls,
            "billing": charge.billing() if done and charge is not None else None,
            # Drawn to never finish (Faults.stuck_rate): the truth to check
            # a monitor's stuck flags against.
            "stuck": task.outcome == "stuck",
        }

    def _new_id(self, *, numeric: bool = False) -> str:
        while True:
            if self.config.task_id_style == "base64" and not numeric:
                raw = self._ids.randbytes(16)
                task_id = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
            else:
                task_id = str(self._ids.randrange(8 * 10**17, 9 * 10**17))
            if task_id not in self._tasks:
                return task_id

    def _new_task(
        self,
        endpoint: str,
        body: dict[str, Any],
        base_url: str,
        now: float,
        slots: int,
        *,
        pool: str,
        new: tuple[str, str] | None = None,
    ) -> SimTask:
        faults = self.config.faults
        kind = output_kind(new[0]) if new else "video"
        plan = draw_plan(
            self._own_draws(body, "tasks") or self._rng,
            endpoint=endpoint,
            body=plan_body(body) if new else body,
            created=now,
            time_scale=self.config.time_scale,
            fail_rate=faults.fail_rate,
            stuck_rate=faults.stuck_rate,
            image=kind == "image" if new else None,
        )
        extra: dict[str, Any] = {"pool": pool}
        if new:
            family, model = new
            extra |= {
                "generation": "new",
                "family": family,
                "model": model,
                "kind": kind,
                "files": file_names(kind, slots),
            }
        task = SimTask(
            task_id=self._new_id(numeric=new is not None),
            endpoint=endpoint,
            body=body,
            base_url=(self.config.public_url or base_url).rstrip("/"),
            created=now,
            video_ids=(
                [str(self._ids.randrange(10**17, 2 * 10**17))]
                if new
                else new_video_ids(self._ids, slots)
            ),
            slots=slots,
            **plan,
            **extra,
        )
        if endpoint.endswith("/video-extend"):
            task.parent_video, task.parent_model = self._parent(str(body["video_id"]))
        self._tasks[task.task_id] = task
        self._by_endpoint[endpoint].append(task.task_id)
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

    def _own_draws(self, body: dict[str, Any], stream: str) -> random.Random | None:
        """The task's own stream of ``stream`` draws (``SimConfig.draws`` prompt),
        or None: the account's one stream, in creation order."""
        if self.config.draws == "order":
            return None
        key = body.get("prompt")
        if not isinstance(key, str):
            key = json.dumps(body, sort_keys=True, default=str)
        seed = (
            self.config.seed
            if self.config.draws_seed is None
            else self.config.draws_seed
        )
        return random.Random(f"{seed}:{stream}:{key}")

    def _plan_callbacks(self, task: SimTask) -> None:
        if not task.callback_url:
            return
        faults = self.config.faults
        rng = self._own_draws(task.body, "callbacks") or self._callback_rng
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
            # Ids always from the account's stream: two tasks may share a prompt.
            bits = self._callback_rng.getrandbits(128)
            msg_id = f"msg_{uuid.UUID(int=bits, version=4).hex}"
            self.callbacks.schedule(
                task.task_id, at=at, due=due, msg_id=msg_id, copies=copies
            )

    def _snapshot(self, task_id: str, at: float) -> Snapshot:
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.callback_url is None:
                return None
            if task.generation == "new":
                return task.callback_url, self._new_view(task, at)
            return task.callback_url, task.view(at)


def _count(body: dict[str, Any]) -> int:
    n = body.get("n", 1)
    return n if isinstance(n, int) and 1 <= n <= 9 else 1


def _parse_media_path(path: str) -> tuple[str, str]:
    parts = path.strip("/").split("/")
    if len(parts) != 3 or parts[0] != "media" or not _MEDIA_NAME.match(parts[2]):
        raise ValueError("not a result file path: /media/<task_id>/<n>.mp4")
    return parts[1], parts[2]
