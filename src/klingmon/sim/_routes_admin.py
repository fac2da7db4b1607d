"""``/admin/*``: counters to check clients by, faults and scripts to set (tests)."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Any

from starlette.responses import JSONResponse, Response

from klingmon.sim._config import Faults

if TYPE_CHECKING:
    from starlette.requests import Request

    from klingmon.sim._simulator import Simulator

__all__ = ["AdminRoutes"]


async def _json_object(request: Request) -> dict[str, Any]:
    data = json.loads(await request.body())
    if not isinstance(data, dict):
        raise TypeError("expected a JSON object")
    return data


class AdminRoutes:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    async def counters(self, _request: Request) -> Response:
        counters = self._sim.counters()  # as it was before this request
        self._sim.record("admin", "200")
        return JSONResponse(counters)

    async def faults(self, request: Request) -> Response:
        try:
            faults = Faults.from_json(await _json_object(request))
        except (ValueError, TypeError) as exc:
            self._sim.record("admin", "400")
            return JSONResponse({"error": str(exc)}, 400)
        self._sim.set_faults(faults)
        self._sim.record("admin", "200")
        return JSONResponse({"faults": dataclasses.asdict(faults)})

    async def script(self, request: Request) -> Response:
        try:
            args = await _json_object(request)
            self._sim.script(**args)
        except (ValueError, TypeError) as exc:
            self._sim.record("admin", "400")
            return JSONResponse({"error": str(exc)}, 400)
        self._sim.record("admin", "200")
        return JSONResponse({"scripted": args})
