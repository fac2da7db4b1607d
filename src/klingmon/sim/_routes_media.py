"""``/media/<task_id>/<name>``: result files, with ranges, slow chunks and cuts.

New-generation URLs carry ``Expires`` and ``Signature`` parameters that only look
like a CDN's: the file is served whatever they say.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from starlette.responses import Response, StreamingResponse

from klingmon.sim._media import parse_range
from klingmon.sim._newgen import content_type

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request

    from klingmon.sim._simulator import Scripted, Simulator

__all__ = ["MediaRoutes"]

_MEDIA_CHUNK = 64 * 1024


class MediaRoutes:
    def __init__(self, sim: Simulator) -> None:
        self._sim = sim
        self._cuts = sim.config.media_cut  # answers still to cut short

    async def media(self, request: Request) -> Response:
        sim, name = self._sim, request.path_params["name"]
        data = sim.media(request.path_params["task_id"], name)
        if data is None:
            sim.record("media", "404")
            return Response("Not Found", 404, media_type="text/plain")
        headers = {"Accept-Ranges": "bytes", "Content-Type": content_type(name)}
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
            return self._answer(data, 200, headers)
        first, last = chosen
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
        sim.record("media", "206")
        return self._answer(data[first : last + 1], 206, headers)

    def _answer(self, body: bytes, status: int, headers: dict[str, str]) -> Response:
        """A result file, streamed slowly or cut halfway when the config asks for it."""
        delay = self._sim.config.media_chunk_delay
        cut = self._cuts > 0 and len(body) > 1
        if cut:
            self._cuts -= 1
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
                # Fewer bytes than Content-Length promised: the server drops it.
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
