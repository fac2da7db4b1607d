"""Request-body limits for every route: a size cap and a read deadline.

uvicorn bounds header size (h11) and idle keep-alive time, but not a body that
is announced and then trickled in a byte at a time (slow loris) or one that is
simply huge. This ASGI middleware refuses a declared oversized body at once
(413), stops reading a streamed one as soon as it passes the cap, and answers
408 when the whole body has not arrived within ``body_timeout`` seconds. The
deadline is network time (the event loop's monotonic clock), not Kling time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimits", "Limits"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """At most ``max_body`` bytes per body, all arrived within ``body_timeout`` s."""

    max_body: int = 1024 * 1024
    body_timeout: float = 10.0


class _RefusedError(Exception):
    """Raised out of ``receive`` to abandon a request; carries the answer."""

    def __init__(self, status: int, error: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error


class BodyLimits:
    """ASGI middleware enforcing :class:`Limits` on HTTP request bodies."""

    def __init__(self, app: ASGIApp, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limits = self.limits
        declared = _content_length(scope)
        if declared is not None and declared > limits.max_body:
            await _answer(send, 413, "too_large")
            return
        body = _LimitedBody(receive, limits)
        answer = _TrackedSend(send)
        try:
            await self.app(scope, body.receive, answer.send)
        except _RefusedError as refused:
            logger.info("web.body_refused", extra={"reason": refused.error})
            if not answer.started:
                await _answer(send, refused.status, refused.error)


class _LimitedBody:
    """One request's ``receive``, refusing a body too large or too slow to arrive."""

    def __init__(self, receive: Receive, limits: Limits) -> None:
        self._receive = receive
        self._limits = limits
        self._loop = asyncio.get_running_loop()
        self._deadline = self._loop.time() + limits.body_timeout
        self._size = 0
        self._done = False

    async def receive(self) -> Message:
        if self._done:
            return await self._receive()
        remaining = self._deadline - self._loop.time()
        if remaining <= 0:
            raise _RefusedError(408, "body_timeout")
        try:
            async with asyncio.timeout(
                remaining
            ):  # no task of its own, unlike wait_for
                message = await self._receive()
        except TimeoutError:
            raise _RefusedError(408, "body_timeout") from None
        if message["type"] == "http.request":
            self._size += len(message.get("body", b""))
            if self._size > self._limits.max_body:
                raise _RefusedError(413, "too_large")
            self._done = not message.get("more_body", False)
        return message


class _TrackedSend:
    """One request's ``send``, remembering whether the answer has started."""

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _answer(send: Send, status: int, error: str) -> None:
    body = b'{"error":"' + error.encode() + b'"}'
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
