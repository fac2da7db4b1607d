"""The clock seam: everything that reads the time or waits takes one of these.

Tests and the virtual-time benchmark inject their own, so that hours of Kling time
pass in milliseconds and every decision is repeatable.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

__all__ = ["Clock", "SystemClock", "to_ms"]


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread (the sync client's waits)."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Wait without blocking the event loop."""
        ...


class SystemClock:
    """The real time."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    def __repr__(self) -> str:
        return "SystemClock()"


def to_ms(seconds: float) -> int:
    """Epoch seconds to the epoch milliseconds Kling and the store use."""
    return round(seconds * 1000)
