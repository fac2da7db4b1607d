"""``create_app``: the receiver, JSON API, health and metrics in one FastAPI app.

Store work is synchronous SQLAlchemy, so it runs in the thread pool, except the
callback route's: it reads its body with a hard cap first (an oversized body costs
nothing), parses it on the loop, and awaits the receiver's group commit, which
commits every callback that arrived meanwhile at once: on the loop for SQLite, in
one hop to the pool for PostgreSQL.
"""

from __future__ import annotations

import contextlib
import gc
import hmac
import logging
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from klingmon._clock import Clock, SystemClock
from klingmon.errors import KlingmonError
from klingmon.store import writer_gate
from klingmon.web._answering import Answering
from klingmon.web._api import router
from klingmon.web._dashboard import Dashboard, install_dashboard
from klingmon.web._hosts import HostCheck, HostPolicy
from klingmon.web._limits import BodyLimits, Limits
from klingmon.web._metrics import CONTENT_TYPE, Metrics
from klingmon.web._receiver import Outcome, Receiver, ReceiverSettings

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from klingmon.engine import Account
    from klingmon.store import Store

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: The legacy callback body (the bare task object), self-contained for OpenAPI.
_TASK_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task_id", "task_status"],
    "properties": {
        "task_id": {"type": "string"},
        "task_status": {"type": "string"},
        "task_status_msg": {"type": "string"},
        "created_at": {"type": "integer"},
        "updated_at": {"type": "integer"},
        "final_unit_deduction": {"type": "string"},
        "task_info": {
            "type": "object",
            "properties": {"external_task_id": {"type": "string"}},
        },
        "task_result": {"type": "object"},
    },
}

_CALLBACK_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _TASK_SCHEMA}},
    },
    "responses": {
        "202": {"description": "Terminal hint taken; a GET confirms it"},
        "401": {"description": "Bad Standard Webhooks signature"},
        "400": {"description": "Body is not a JSON object, or a foreign Host"},
        "403": {"description": "Token is not this task's (or the task is unknown)"},
        "404": {"description": "Unknown task, with the token of its own id"},
        "409": {"description": "task_id does not match"},
        "413": {"description": "Body too large"},
        "422": {"description": "Not a Kling task object"},
    },
}


def create_app(
    store: Store,
    *,
    secret: bytes,
    settings: ReceiverSettings | None = None,
    clock: Clock | None = None,
    api_token: str | None = None,
    metrics: Metrics | None = None,
    dashboard: Dashboard | None = None,
    limits: Limits | None = None,
    allowed_hosts: Sequence[str] = (),
    account: Account | None = None,
) -> FastAPI:
    """The web app over ``store``; ``secret`` keys the callback-URL tokens.

    Each callback taken in is told through ``store.fleet.notify`` (a
    :class:`~klingmon.store.Notice`: listeners in this process hear it once its
    commit is done; an engine registers one). With ``api_token`` the JSON API and
    ``/metrics`` want ``Authorization: Bearer <api_token>``. The dashboard is
    served at ``/``: ``dashboard`` configures it (default: read-only unless
    ``api_token`` is set, which then protects it too). ``limits`` caps every
    request body's size and read time (slow-loris bodies get a 408).

    Only requests whose ``Host`` is a loopback name or one of ``allowed_hosts``
    (the public URL's host, names the server is reached by) get past a 400: a
    DNS-rebinding page never reaches a route.

    ``account``: the process's resource packs (the engine's, in ``serve``), shown
    on the dashboard and in ``/metrics``; default: the last figures saved in the
    store.
    """
    clock = clock or SystemClock()
    receiver = Receiver(
        store,
        secret,
        settings or ReceiverSettings(),
        clock,
        # A SQLite commit is local CPU work: on the loop it saves a hop per group and
        # the GIL ping-pong between two busy threads. PostgreSQL waits on the network.
        offload=None if store.dialect == "sqlite" else _off_loop,
    )
    metrics = metrics or Metrics(store, account=account)

    def authorize(request: Request) -> None:
        if api_token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {api_token}".encode()):
            raise HTTPException(401, detail="missing or wrong bearer token")

    app = FastAPI(
        title="klingmon",
        summary="Kling callback receiver and job monitor",
        version="1",
        lifespan=_frozen_at_start,
    )
    app.state.store = store
    app.state.receiver = receiver
    app.state.metrics = metrics
    # Innermost: an engine of this process (serve) holds back while a callback's
    # answer is read, made and sent.
    app.add_middleware(Answering, gate=writer_gate(store))
    app.add_middleware(BodyLimits, limits=limits or Limits())
    # Added last, so it runs first: a foreign Host costs not even a body read.
    app.add_middleware(HostCheck, policy=HostPolicy.of(allowed_hosts))

    @app.exception_handler(KlingmonError)
    async def store_failed(_request: Request, exc: KlingmonError) -> JSONResponse:
        logger.warning("web.error", extra={"error": type(exc).__name__})
        return JSONResponse({"error": "unavailable"}, status_code=503)

    @app.post(
        "/callbacks/kling/{token}",
        summary="Kling task callback (bare legacy task object)",
        openapi_extra=_CALLBACK_DOC,
        tags=["callbacks"],
    )
    async def callback(token: str, request: Request) -> JSONResponse:
        body = await _read_capped(request, receiver.settings.max_body)
        if body is None:
            outcome = Outcome(
                413, {"error": "too_large", "detail": "body too large"}, "too_large"
            )
        else:
            outcome = await receiver.handle_async(token, body, request.headers)
        metrics.callback(outcome.status_code, outcome.reason)
        return JSONResponse(outcome.body, status_code=outcome.status_code)

    # After the callback route: the busiest route is matched first.
    app.include_router(router, dependencies=[Depends(authorize)])

    @app.get("/healthz", tags=["health"], summary="The process is up")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="The store answers",
        responses={503: {"description": "The store does not answer"}},
    )
    def readyz() -> JSONResponse:
        try:
            store.outbox.outbox_backlog()
        except Exception:  # noqa: BLE001 - any failure means not ready
            return JSONResponse({"status": "unavailable"}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        tags=["health"],
        summary="Prometheus metrics",
        dependencies=[Depends(authorize)],
        response_class=Response,
    )
    def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    install_dashboard(
        app, store, dashboard or Dashboard(token=api_token), clock, account
    )
    return app


async def _off_loop(func: Callable[..., T], *args: Any) -> T:
    """A group's commit, off the loop (a virtual-time run patches it inline)."""
    return await run_in_threadpool(func, *args)


@contextlib.asynccontextmanager
async def _frozen_at_start(_app: FastAPI) -> AsyncIterator[None]:
    """Move what start-up built (modules, the app, the store) out of the cyclic
    collector's reach: it lives as long as the server, and walking it on every full
    collection cost about 15 % of callback throughput under load."""
    gc.collect()
    gc.freeze()
    yield


async def _read_capped(request: Request, cap: int) -> bytes | None:
    """The body, or None as soon as it passes ``cap`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit():
        if int(declared) > cap:
            return None
        # The server holds a body to its declared length: read it in one go.
        return await request.body()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
