"""The HTTP face of the simulator: both API generations, media and admin routes."""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import Route

from klingmon.sim._date import DateHeader
from klingmon.sim._pipeline import Pipeline, spring_error
from klingmon.sim._routes_admin import AdminRoutes
from klingmon.sim._routes_api import KNOWN_ENDPOINTS, LegacyRoutes, NewRoutes
from klingmon.sim._routes_media import MediaRoutes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request
    from starlette.responses import Response

    from klingmon.sim._simulator import Simulator

__all__ = ["KNOWN_ENDPOINTS", "build_app"]


def _routes(sim: Simulator) -> list[Route]:
    pipeline = Pipeline(sim)
    legacy, new = LegacyRoutes(sim, pipeline), NewRoutes(sim, pipeline)
    routes = [
        Route("/v1/{rest:path}", legacy.api, methods=["GET", "POST"]),
        Route(
            "/media/{task_id}/{name}", MediaRoutes(sim).media, methods=["GET", "HEAD"]
        ),
        Route("/tasks", new.tasks_get, methods=["GET"]),
        Route("/tasks", new.tasks_post, methods=["POST"]),
        Route("/account/costs", new.costs, methods=["GET"]),
    ]
    if sim.config.admin:
        admin = AdminRoutes(sim)
        routes += [
            Route("/admin/counters", admin.counters, methods=["GET"]),
            Route("/admin/faults", admin.faults, methods=["POST"]),
            Route("/admin/script", admin.script, methods=["POST"]),
        ]
    routes.append(Route("/{family}/{model}", new.create, methods=["GET", "POST"]))
    return routes


def build_app(sim: Simulator) -> Starlette:
    """The Starlette app of ``sim``; its lifespan runs the callback dispatcher."""

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        sim.record("other", str(status))
        return spring_error(request, status, sim.clock.now())

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with sim.running():
            yield

    return Starlette(
        routes=_routes(sim),
        exception_handlers={HTTPException: http_error},
        middleware=[Middleware(DateHeader, clock=sim.clock)],
        lifespan=lifespan,
    )
