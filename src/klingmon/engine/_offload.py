"""Store calls off the event loop, one after another.

``klingmon serve`` runs the receiver and the engine on one loop: a store call made
on it would hold every callback behind it. Each duty awaits its store calls through
an :class:`Offload`, which runs them in a worker thread, still in order (the next
call starts only once this one returned). The virtual-time benchmark swaps
:func:`run_blocking` for an inline call, so that a commit takes no virtual time.
"""

from __future__ import annotations

import asyncio
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

    __slots__ = ("inline",)

    def __init__(self, *, inline: bool = False) -> None:
        self.inline = inline

    async def __call__(
        self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        if self.inline:
            return fn(*args, **kwargs)
        result: T = await run_blocking(fn, *args, **kwargs)
        return result
