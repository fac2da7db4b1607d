"""A virtual-time asyncio event loop: hours of Kling time in seconds, exactly.

``VirtualTimeLoop.time()`` returns virtual seconds. When no callback is ready and no
real I/O is pending, instead of blocking in ``select`` for ``timeout`` seconds the loop
jumps its clock to the earliest scheduled timer. Every coroutine that sleeps with
``asyncio.sleep`` (or waits with a timeout) therefore wakes in deadline order, as in a
discrete-event simulation, however many of them sleep at once. Work that runs between
two timers takes no virtual time at all.

``LoopClock`` is a :class:`klingmon._clock.Clock` over that loop: ``now()`` is an epoch
base plus the loop's virtual time, ``asleep`` is ``asyncio.sleep``. It is injected into
the simulator, the Kling client and the engine, so all of them share one timeline.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from collections.abc import Coroutine, Mapping

__all__ = ["DEFAULT_EPOCH", "LoopClock", "VirtualTimeLoop", "run_virtual"]

T = TypeVar("T")

#: 2026-05-28T08:00:00Z, the same "now" as :class:`klingmon.testing.VirtualClock`.
DEFAULT_EPOCH = 1_779_955_200.0


class _JumpingSelector(selectors.BaseSelector):
    """Polls real I/O without blocking; a wait with a timeout jumps virtual time."""

    def __init__(self, inner: selectors.BaseSelector) -> None:
        self._inner = inner
        self.loop: VirtualTimeLoop | None = None

    def select(
        self, timeout: float | None = None
    ) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or (timeout is not None and timeout <= 0):
            return ready
        if timeout is None or self.loop is None:
            # Nothing scheduled at all: only another thread can wake us (self-pipe).
            return self._inner.select(timeout)
        self.loop.jump(timeout)
        return []

    def register(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(
        self, fileobj: Any, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock only moves to the next timer when idle."""

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = start
        self.jumps = 0
        selector = _JumpingSelector(selectors.DefaultSelector())
        super().__init__(selector)
        selector.loop = self

    def time(self) -> float:
        return self._virtual_now

    def jump(self, timeout: float) -> None:
        """Move to the earliest timer (``timeout`` s ahead, as asyncio computed)."""
        target = self._virtual_now + timeout
        scheduled: list[asyncio.TimerHandle] = getattr(self, "_scheduled", [])
        if scheduled:
            # Land exactly on the deadline, not a rounding error short of it.
            target = max(target, scheduled[0].when())
        self._virtual_now = max(self._virtual_now, target)
        self.jumps += 1


class LoopClock:
    """A ``Clock`` reading the running loop's (virtual) time from an epoch base."""

    def __init__(self, loop: asyncio.AbstractEventLoop, epoch: float = DEFAULT_EPOCH):
        self._loop = loop
        self._epoch = epoch - loop.time()

    def now(self) -> float:
        return self._epoch + self._loop.time()

    def sleep(self, seconds: float) -> None:  # noqa: ARG002 - the Clock protocol
        raise RuntimeError("blocking sleeps cannot run on a virtual-time loop")

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return f"LoopClock(now={self.now()!r})"


def run_virtual(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop) as runner:
        return runner.run(main)
