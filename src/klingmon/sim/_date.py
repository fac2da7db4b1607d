"""The ``Date`` header on the simulator's own clock.

Kling's answers carry its time; clients use it to notice a skewed local clock. The
simulator may run on a virtual or deliberately skewed clock, so it writes the header
itself (the server's own ``Date`` is turned off where the simulator is served).
"""

from __future__ import annotations

import email.utils
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from klingmon._clock import Clock

__all__ = ["DateHeader"]


class DateHeader:
    """ASGI middleware: every HTTP answer gets ``Date`` from ``clock``."""

    def __init__(self, app: ASGIApp, clock: Clock) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_date(message: Message) -> None:
            if message["type"] == "http.response.start":
                stamp = email.utils.formatdate(self.clock.now(), usegmt=True)
                headers = [
                    (k, v)
                    for k, v in message.get("headers", [])
                    if k.lower() != b"date"
                ]
                message = {**message, "headers": [*headers, (b"date", stamp.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_date)
