"""A callback's answer, read to sent, holds back an engine in the same process."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from klingmon.store import WriterGate
from klingmon.web._answering import Answering

if TYPE_CHECKING:
    from collections.abc import Callable

_LONG = 60.0


def _until(done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + _LONG
    while not done():
        assert time.monotonic() < deadline, "the other thread never got there"
        time.sleep(0.001)


def _engine_call(gate: WriterGate, done: threading.Event) -> threading.Thread:
    """A store call of the engine's: it first yields to answers being given."""

    def run() -> None:
        gate.yield_to_answers()
        done.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _serve(gate: WriterGate, path: str, inner: Callable[[], None]) -> None:
    """One request to ``path`` through :class:`Answering`; the route runs ``inner``."""

    async def route(scope: Any, receive: Any, send: Any) -> None:
        del scope, receive, send
        inner()

    asyncio.run(Answering(route, gate=gate)({"type": "http", "path": path}, None, None))  # type: ignore[arg-type]


def test_the_engine_waits_while_a_callback_is_answered():
    """Inside a callback request the engine's next call waits; after it, it goes."""
    gate = WriterGate(yield_s=_LONG)
    done = threading.Event()
    threads: list[threading.Thread] = []

    def inner() -> None:
        threads.append(_engine_call(gate, done))
        _until(lambda: gate.backlog == 1)
        assert not done.is_set()

    _serve(gate, "/callbacks/kling/token", inner)
    threads[0].join(_LONG)
    assert done.is_set()


def test_other_routes_hold_nothing_back():
    """A dashboard page is not an answer Kling waits for."""
    gate = WriterGate(yield_s=_LONG)
    done = threading.Event()

    def inner() -> None:
        _engine_call(gate, done).join(_LONG)
        assert done.is_set()

    _serve(gate, "/batches/1", inner)
