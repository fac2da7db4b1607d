"""VirtualClock: settable time that sleeping moves forward."""

from __future__ import annotations

import asyncio

from klingmon.testing import VirtualClock


def test_advance_and_set():
    """advance() moves forward; set() places the clock anywhere."""
    clock = VirtualClock(100.0)
    assert clock.advance(5) == 105.0
    clock.advance(-3)
    assert clock.now() == 105.0
    clock.set(50.0)
    assert clock.now() == 50.0


def test_sleep_advances_instantly():
    """sleep() returns at once with the clock moved by the wait."""
    clock = VirtualClock(0.0)
    clock.sleep(30)
    assert clock.now() == 30.0


async def test_concurrent_sleepers_do_not_add_up():
    """Two coroutines sleeping together move the clock to the later deadline."""
    clock = VirtualClock(0.0)
    await asyncio.gather(clock.asleep(10), clock.asleep(30))
    assert clock.now() == 30.0
    assert "VirtualClock" in repr(clock)
