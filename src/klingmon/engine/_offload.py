"""Store calls off the event loop, one after another.

``klingmon serve`` runs the receiver and the engine in one process: a store call made
on the engine's loop would hold the loop, and a write of the engine's would take
SQLite's one write slot in turn with the receiver's. Each duty awaits its store
calls through an :class:`Offload`, which runs them in a worker thread, still in
order (the next call starts only once this one returned), inside ``around`` (the
store's ``background``: its writes let a waiting callback's commit go first) and
after ``pause`` (the loop itself stands still a moment while a callback is being
answered: its own work would take the interpreter lock in turns with the answer's).
The virtual-time benchmark swaps :func:`run_blocking` for an inline call, so that a
commit takes no virtual time.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Offload", "run_blocking"]

P = ParamSpec("P")
T = TypeVar("T")


async def run_blocking(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Run ``fn`` in the loop's default thread pool (looked up at each call)."""
    return await asyncio.to_thread(fn, *args, **kwargs)


class Offload:
    """Awaits blocking calls in a thread; ``inline`` runs them on the loop instead
    (an in-memory SQLite store has one connection, which two threads must not share).
    """

    __slots__ = ("_around", "_pause", "inline")

    def __init__(
        self,
        *,
        inline: bool = False,
        around: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
        pause: Callable[[], None] | None = None,
    ) -> None:
        self.inline = inline
        self._around = around or contextlib.nullcontext
        #: Called on the loop before each call: it may block the loop a moment (the
        #: store's ``yield_to_answers``: an answer given meanwhile wants the
        #: interpreter lock, which this loop's own work would take turns for).
        self._pause = pause or _no_pause

    async def __call__(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self.inline:
            return fn(*args, **kwargs)
        self._pause()
        result: T = await run_blocking(self._run, fn, *args, **kwargs)
        return result

    def _run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        with self._around():
            return fn(*args, **kwargs)


def _no_pause() -> None:
    pass
