"""In-process transports over the simulator, for tests without sockets.

The async one wraps :class:`httpx.ASGITransport`; the sync one runs that in an
event loop on a private thread, so the sync client can be tested in-process too.
Both start the callback dispatcher (ASGITransport runs no lifespan) and stop it
when closed, and both turn a dropped answer into :class:`httpx.RemoteProtocolError`
as a real socket would.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Protocol

import httpx

from klingmon.sim._answers import DROP_HEADER

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["Hosted", "InProcessTransport", "SyncInProcessTransport"]


class Hosted(Protocol):
    """What the transports serve: one simulated account or several."""

    @property
    def app(self) -> ASGIApp: ...

    @property
    def dispatching(self) -> bool: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


def _dropped(request: httpx.Request) -> httpx.RemoteProtocolError:
    return httpx.RemoteProtocolError(
        "peer closed connection without sending complete message body",
        request=request,
    )


class InProcessTransport(httpx.AsyncBaseTransport):
    """``httpx.ASGITransport`` over the simulator, which also runs its callbacks.

    ASGITransport runs no lifespan, so the callback dispatcher is started on the
    first request and stopped by :meth:`aclose`. A dropped answer surfaces as
    :class:`httpx.RemoteProtocolError`, as it does over a real socket.
    """

    def __init__(self, sim: Hosted) -> None:
        self._sim = sim
        self._inner = httpx.ASGITransport(app=self._app)
        self._started = False

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        # ASGITransport insists on a complete response: end the dropped one here.
        dropped = False

        async def watch(message: Message) -> None:
            nonlocal dropped
            if message["type"] == "http.response.start":
                dropped = (DROP_HEADER.encode(), b"1") in message.get("headers", [])
            await send(message)

        await self._sim.app(scope, receive, watch)
        if dropped:
            await send({"type": "http.response.body", "body": b""})

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._sim.dispatching:
            await self._sim.start()
            self._started = True
        response = await self._inner.handle_async_request(request)
        if response.headers.get(DROP_HEADER):
            await response.aclose()
            raise _dropped(request)
        return response

    async def aclose(self) -> None:
        if self._started:
            await self._sim.aclose()
            self._started = False
        await self._inner.aclose()


class SyncInProcessTransport(httpx.BaseTransport):
    """The in-process transport for ``httpx.Client``: a loop on a private thread.

    Close it (``httpx.Client`` closes its transport) to stop the thread.
    """

    def __init__(self, sim: Hosted) -> None:
        self._inner = InProcessTransport(sim)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="klingmon-sim-inprocess", daemon=True
        )
        self._thread.start()

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            content=content,
            request=request,
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._loop.is_closed():
            raise RuntimeError("the transport is closed")
        body = request.read()
        copy = httpx.Request(
            request.method, request.url, headers=request.headers, content=body
        )
        future = asyncio.run_coroutine_threadsafe(self._handle(copy), self._loop)
        try:
            response = future.result()
        except httpx.RemoteProtocolError:
            raise _dropped(request) from None
        response.request = request
        return response

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._inner.aclose(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
