"""The Kling API routes of both generations, over one simulator.

Legacy: ``/v1/<videos|images>/<endpoint>[/<id>]`` (create, get, list). New:
``POST /<family>/<model>``, ``GET /tasks?task_ids=``, ``POST /tasks`` and
``GET /account/costs``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from klingmon._clock import to_ms
from klingmon.sim._answers import Answer, error
from klingmon.sim._pipeline import spring_error
from klingmon.sim._query import parse_ids, parse_sweep

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

    from klingmon.sim._pipeline import Pipeline
    from klingmon.sim._simulator import Simulator

__all__ = ["KNOWN_ENDPOINTS", "LegacyRoutes", "NewRoutes"]

#: Legacy task paths of reference §4 (others of the same shape work too).
KNOWN_ENDPOINTS = frozenset(
    {
        "/v1/videos/text2video",
        "/v1/videos/image2video",
        "/v1/videos/video-extend",
        "/v1/videos/multi-image2video",
        "/v1/videos/lip-sync",
        "/v1/videos/identify-face",
        "/v1/videos/advanced-lip-sync",
        "/v1/videos/effects",
        "/v1/videos/avatar/image2video",
        "/v1/videos/multi-elements",
        "/v1/videos/omni-video",
        "/v1/images/generations",
        "/v1/images/kolors-virtual-try-on",
        "/v1/images/editing/expand",
        "/v1/images/omni-image",
        "/v1/images/multi-image2image",
        "/v1/audio/text-to-audio",
        "/v1/audio/video-to-audio",
    }
)
_KINDS = ("videos", "images", "audio")


def _classify(sim: Simulator, request: Request) -> tuple[str, str, str | None] | None:
    """``(route, endpoint, id)`` of a legacy request, or None for no such route."""
    path = request.url.path.rstrip("/")
    parts = path.split("/")
    if len(parts) < 4 or parts[1] != "v1" or parts[2] not in _KINDS:
        return None
    if request.method == "POST":
        return "create", path, None
    ext = request.query_params.get("external_task_id")
    if ext is not None:
        return "get", path, ext
    if path in KNOWN_ENDPOINTS or sim.is_endpoint(path) or len(parts) < 5:
        return "list", path, None
    parent, _, ident = path.rpartition("/")
    return "get", parent, ident


def _page_param(request: Request, name: str, default: int, top: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= top:
        raise ValueError(f"{name} value '{raw}' is invalid: must be in [1, {top}]")
    return value


async def _body(request: Request) -> dict[str, Any] | Answer:
    """The JSON object of a request, or the 1200 answer refusing it."""
    try:
        body = json.loads(await request.body())
    except ValueError:
        return error(1200, "request body is not valid JSON")
    if not isinstance(body, dict):
        return error(1200, "request body must be a JSON object")
    return body


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


class LegacyRoutes:
    """``/v1/...``: JWT or API key, ``task_id`` / ``task_status`` objects."""

    def __init__(self, sim: Simulator, pipeline: Pipeline) -> None:
        self._sim = sim
        self._pipeline = pipeline

    def _work(
        self, request: Request, route: str, endpoint: str, ident: str | None
    ) -> Callable[[], Awaitable[Answer]]:
        sim = self._sim

        async def work() -> Answer:
            if route == "create":
                body = await _body(request)
                if isinstance(body, Answer):
                    return body
                return sim.create(endpoint, body, _base(request))
            if route == "get":
                return sim.query(endpoint, ident or "")
            try:
                page = _page_param(request, "pageNum", 1, 1000)
                size = _page_param(request, "pageSize", 30, 500)
            except ValueError as exc:
                return error(1201, str(exc))
            return sim.list_tasks(endpoint, page, size)

        return work

    async def api(self, request: Request) -> Response:
        kind = _classify(self._sim, request)
        if kind is None:
            self._sim.record("other", "404")
            return spring_error(request, 404, self._sim.clock.now())
        route, endpoint, ident = kind
        work = self._work(request, route, endpoint, ident)
        answer = await self._pipeline.respond(request, route, work)
        self._sim.record(route, answer.outcome)
        return answer.response()


class NewRoutes:
    """The new generation: API keys only, ``id`` / ``status`` task objects."""

    def __init__(self, sim: Simulator, pipeline: Pipeline) -> None:
        self._sim = sim
        self._pipeline = pipeline

    async def _answer(
        self,
        request: Request,
        route: str,
        work: Callable[[], Awaitable[Answer]],
        *,
        keys_only: bool = True,
    ) -> Response:
        answer = await self._pipeline.respond(request, route, work, keys_only=keys_only)
        self._sim.record(route, answer.outcome)
        return answer.response()

    async def create(self, request: Request) -> Response:
        """``POST /<family>/<model>``; other methods and unknown families: 404."""
        sim, path = self._sim, request.url.path.rstrip("/")
        if request.method != "POST" or sim.is_new_path(path) is None:
            sim.record("other", "404")
            return spring_error(request, 404, sim.clock.now())

        async def work() -> Answer:
            body = await _body(request)
            if isinstance(body, Answer):
                return body
            return sim.create_new(path, body, _base(request))

        return await self._answer(request, "create", work)

    async def tasks_get(self, request: Request) -> Response:
        sim = self._sim

        async def work() -> Answer:
            parsed = parse_ids(dict(request.query_params), sim.config.max_query_ids)
            if isinstance(parsed, str):
                return error(1201, parsed)
            ids, external = parsed
            return sim.query_ids(ids, external=external)

        return await self._answer(request, "tasks_get", work)

    async def tasks_post(self, request: Request) -> Response:
        sim = self._sim

        async def work() -> Answer:
            raw = await request.body()
            body = await _body(request) if raw.strip() else {}
            if isinstance(body, Answer):
                return body
            query = parse_sweep(body, to_ms(sim.clock.now()))
            if isinstance(query, str):
                return error(1201, query)
            return sim.sweep(query)

        return await self._answer(request, "tasks_post", work)

    async def costs(self, request: Request) -> Response:
        """``GET /account/costs`` takes both credentials (it predates API keys)."""
        sim = self._sim

        async def work() -> Answer:
            params = request.query_params
            for key in ("start_time", "end_time"):
                value = params.get(key)
                if value is not None and not value.isdigit():
                    return error(1201, f"{key} value '{value}' is invalid")
            return sim.costs(params.get("resource_pack_name"))

        return await self._answer(request, "costs", work, keys_only=False)
