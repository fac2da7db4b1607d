"""What every API request goes through: latency, scripts, auth, faults, mangling.

The order is Kling's as seen from a client: a scripted answer wins, then the
bearer check of the request's generation, then random faults, then the work;
a stored create may still lose its answer (dropped or malformed).
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response

from klingmon.sim._answers import Answer, error
from klingmon.sim._auth import API_KEY_MESSAGES, check_api_key, check_authorization

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

    from klingmon.sim._simulator import Simulator

__all__ = ["Pipeline", "spring_error"]


def spring_error(request: Request, status: int, now: float) -> Response:
    """The Spring Boot error page Kling's gateway answers for unknown routes."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    body = {
        "timestamp": stamp[:-3] + "+0000",
        "status": status,
        "error": HTTPStatus(status).phrase,
        "message": "No message available",
        "path": request.url.path,
    }
    return JSONResponse(body, status)


class Pipeline:
    """Runs one request's work between the simulator's scripts and faults."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def _auth(self, request: Request, *, keys_only: bool) -> Answer | None:
        header = request.headers.get("authorization")
        config = self._sim.config
        if keys_only:
            code = check_api_key(header, api_key=config.api_key)
            return None if code is None else error(code, API_KEY_MESSAGES[code])
        code = check_authorization(
            header,
            access_key=config.access_key,
            secret_key=config.secret_key,
            api_key=config.api_key,
            now=self._sim.clock.now(),
        )
        return None if code is None else error(code)

    async def _scripted(
        self, route: str, work: Callable[[], Awaitable[Answer]]
    ) -> Answer | None:
        scripted = self._sim.pop_script(route)
        if scripted is None:
            return None
        if scripted.drop:
            if route == "create":
                await work()
            return Answer(200, drop=True)
        return scripted.answer()

    def _mangle(self, route: str, answer: Answer) -> Answer:
        faults, sim = self._sim.config.faults, self._sim
        if route == "create" and sim.draw(faults.drop_create_rate):
            return Answer(200, drop=True)
        if sim.draw(faults.malformed_rate):
            text = answer.raw.decode() if answer.raw else json.dumps(answer.payload)
            return Answer(
                answer.status, raw=text[: len(text) // 2].encode(), malformed=True
            )
        return answer

    async def respond(
        self,
        request: Request,
        route: str,
        work: Callable[[], Awaitable[Answer]],
        *,
        keys_only: bool = False,
    ) -> Answer:
        """The answer to send; ``keys_only``: the new generation's API-key check."""
        latency = self._sim.config.faults.latency
        if latency > 0:
            await asyncio.sleep(latency)
        forced = await self._scripted(route, work)
        if forced is not None:
            return forced
        refused = self._auth(request, keys_only=keys_only)
        if refused is not None:
            return refused
        fault = self._sim.random_fault()
        if fault is not None:
            return fault
        answer = await work()
        if not 200 <= answer.status < 300:
            return answer
        return self._mangle(route, answer)
