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
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.body_timeout
        size = 0
        body_done = False
        started = False

        async def limited_receive() -> Message:
            nonlocal size, body_done
            if body_done:
                return await receive()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _RefusedError(408, "body_timeout")
            try:
                async with asyncio.timeout(
                    remaining
                ):  # no task of its own, unlike wait_for
                    message = await receive()
            except TimeoutError:
                raise _RefusedError(408, "body_timeout") from None
            if message["type"] == "http.request":
                size += len(message.get("body", b""))
                if size > limits.max_body:
                    raise _RefusedError(413, "too_large")
                body_done = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracked_send)
        except _RefusedError as refused:
            logger.info("web.body_refused", extra={"reason": refused.error})
            if not started:
                await _answer(send, refused.status, refused.error)


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
