"""Callback answers first: an engine in this process holds back while one is given.

``klingmon serve`` runs the engine beside the receiver. From the first byte of a
callback's body read to the last of its answer sent, the store's write gate knows
an answer is being given (:meth:`~klingmon.store.WriterGate.answering`), and the
engine's store calls, and its loop before each, wait for it (a few milliseconds at
most): the engine's work would otherwise take the interpreter lock in turns with the
answer's, and its writes SQLite's one write slot.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from klingmon.store import WriterGate

__all__ = ["Answering"]

#: The routes whose callers wait for an answer (Kling does, with a timeout).
CALLBACKS = "/callbacks/"


class Answering:
    """ASGI middleware: each request to :data:`CALLBACKS` runs inside ``answering``."""

    def __init__(self, app: ASGIApp, gate: WriterGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(CALLBACKS):
            await self.app(scope, receive, send)
            return
        with self.gate.answering():
            await self.app(scope, receive, send)
