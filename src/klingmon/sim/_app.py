"""The HTTP face of the simulator: routing, auth, faults, media and admin."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from klingmon.sim._answers import Answer, error
from klingmon.sim._auth import check_authorization
from klingmon.sim._config import Faults
from klingmon.sim._date import DateHeader
from klingmon.sim._media import parse_range

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from starlette.requests import Request

    from klingmon.sim._simulator import Scripted, Simulator

__all__ = ["KNOWN_ENDPOINTS", "build_app"]

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
    }
)
_KINDS = ("videos", "images")


def _spring_error(request: Request, status: int, now: float) -> Response:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    body = {
        "timestamp": stamp[:-3] + "+0000",
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": "No message available",
        "path": request.url.path,
    }
    return JSONResponse(body, status)


def _classify(sim: Simulator, request: Request) -> tuple[str, str, str | None] | None:
    """``(route, endpoint, id)`` of a Kling API request, or None for no such route."""
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


def build_app(sim: Simulator) -> Starlette:
    """The Starlette app of ``sim``; its lifespan runs the callback dispatcher."""

    async def respond(
        request: Request, route: str, work: Callable[[], Awaitable[Answer]]
    ) -> Answer:
        faults = sim.config.faults
        if faults.latency > 0:
            await asyncio.sleep(faults.latency)
        scripted = sim.pop_script(route)
        if scripted is not None:
            if scripted.drop:
                if route == "create":
                    await work()
                return Answer(200, drop=True)
            forced = scripted.answer()
            if forced is not None:
                return forced
        code = check_authorization(
            request.headers.get("authorization"),
            access_key=sim.config.access_key,
            secret_key=sim.config.secret_key,
            api_key=sim.config.api_key,
            now=sim.clock.now(),
        )
        if code is not None:
            return error(code)
        fault = sim.random_fault()
        if fault is not None:
            return fault
        answer = await work()
        if not 200 <= answer.status < 300:
            return answer
        if route == "create" and sim.draw(faults.drop_create_rate):
            return Answer(200, drop=True)
        if sim.draw(faults.malformed_rate):
            text = answer.raw.decode() if answer.raw else json.dumps(answer.payload)
            return Answer(
                answer.status, raw=text[: len(text) // 2].encode(), malformed=True
            )
        return answer

    async def api(request: Request) -> Response:
        kind = _classify(sim, request)
        if kind is None:
            sim.record("other", "404")
            return _spring_error(request, 404, sim.clock.now())
        route, endpoint, ident = kind

        async def work() -> Answer:
            if route == "create":
                try:
                    body = json.loads(await request.body())
                except ValueError:
                    return error(1200, "request body is not valid JSON")
                if not isinstance(body, dict):
                    return error(1200, "request body must be a JSON object")
                base = str(request.base_url).rstrip("/")
                return sim.create(endpoint, body, base)
            if route == "get":
                return sim.query(endpoint, ident or "")
            try:
                page = _page_param(request, "pageNum", 1, 1000)
                size = _page_param(request, "pageSize", 30, 500)
            except ValueError as exc:
                return error(1201, str(exc))
            return sim.list_tasks(endpoint, page, size)

        answer = await respond(request, route, work)
        sim.record(route, answer.outcome)
        return answer.response()

    cuts = [sim.config.media_cut]  # answers still to cut short (media_cut)

    async def media(request: Request) -> Response:
        name = request.path_params["name"]
        index = name.removesuffix(".mp4")
        data = (
            sim.media(request.path_params["task_id"], int(index))
            if name.endswith(".mp4") and index.isdigit()
            else None
        )
        if data is None:
            sim.record("media", "404")
            return Response("Not Found", 404, media_type="text/plain")
        headers = {"Accept-Ranges": "bytes", "Content-Type": "video/mp4"}
        size = len(data)
        scripted = sim.pop_script("media")
        if scripted is not None:
            sim.record("media", f"{scripted.status}-scripted")
            return _scripted_media(scripted, data, headers)
        header = request.headers.get("range")
        try:
            chosen = parse_range(header, size) if header else None
        except ValueError:
            sim.record("media", "416")
            return Response(b"", 416, headers={"Content-Range": f"bytes */{size}"})
        if chosen is None:
            sim.record("media", "200")
            return _media_answer(sim, data, 200, headers, cuts)
        first, last = chosen
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        sim.record("media", "206")
        return _media_answer(sim, data[first : last + 1], 206, headers, cuts)

    async def admin_counters(_request: Request) -> Response:
        counters = sim.counters()  # as it was before this request
        sim.record("admin", "200")
        return JSONResponse(counters)

    async def admin_faults(request: Request) -> Response:
        try:
            faults = Faults.from_json(await _json_object(request))
        except (ValueError, TypeError) as exc:
            sim.record("admin", "400")
            return JSONResponse({"error": str(exc)}, 400)
        sim.set_faults(faults)
        sim.record("admin", "200")
        return JSONResponse({"faults": dataclasses.asdict(faults)})

    async def admin_script(request: Request) -> Response:
        try:
            args = await _json_object(request)
            sim.script(**args)
        except (ValueError, TypeError) as exc:
            sim.record("admin", "400")
            return JSONResponse({"error": str(exc)}, 400)
        sim.record("admin", "200")
        return JSONResponse({"scripted": args})

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        sim.record("other", str(status))
        return _spring_error(request, status, sim.clock.now())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with sim.running():
            yield

    routes = [
        Route("/v1/{rest:path}", api, methods=["GET", "POST"]),
        Route("/media/{task_id}/{name}", media, methods=["GET", "HEAD"]),
    ]
    if sim.config.admin:
        routes += [
            Route("/admin/counters", admin_counters, methods=["GET"]),
            Route("/admin/faults", admin_faults, methods=["POST"]),
            Route("/admin/script", admin_script, methods=["POST"]),
        ]
    return Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(DateHeader, clock=sim.clock)],
        lifespan=lifespan,
    )


_MEDIA_CHUNK = 64 * 1024


def _media_answer(
    sim: Simulator, body: bytes, status: int, headers: dict[str, str], cuts: list[int]
) -> Response:
    """A result file, streamed slowly or cut halfway when the config asks for it."""
    delay = sim.config.media_chunk_delay
    cut = cuts[0] > 0 and len(body) > 1
    if cut:
        cuts[0] -= 1
    if not cut and delay <= 0:
        return Response(body, status, headers=headers)
    headers = headers | {"Content-Length": str(len(body))}
    end = len(body) // 2 if cut else len(body)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, end, _MEDIA_CHUNK):
            if delay > 0:
                await asyncio.sleep(delay)
            yield body[start : min(end, start + _MEDIA_CHUNK)]
        if cut:
            # Fewer bytes than Content-Length promised: the server drops the connection.
            raise ConnectionAbortedError("media answer cut short (media_cut)")

    return StreamingResponse(chunks(), status, headers=headers)


def _scripted_media(
    scripted: Scripted, data: bytes, headers: dict[str, str]
) -> Response:
    """A scripted answer for a result file: another body, type or range."""
    headers = dict(headers)
    body = data if scripted.body is None else scripted.body.encode()
    if scripted.content_type is not None:
        headers.pop("Content-Type")
        if scripted.content_type:
            headers["Content-Type"] = scripted.content_type
    if scripted.content_range is not None:
        headers["Content-Range"] = scripted.content_range
        span = scripted.content_range.removeprefix("bytes ").partition("/")[0]
        first, _, last = span.partition("-")
        if first.isdigit() and last.isdigit():
            body = body[int(first) : int(last) + 1]
    return Response(body, scripted.status, headers=headers)


async def _json_object(request: Request) -> dict[str, Any]:
    data = json.loads(await request.body())
    if not isinstance(data, dict):
        raise TypeError("expected a JSON object")
    return data
