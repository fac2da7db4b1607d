"""The engine on an event loop of its own, beside a server's.

In ``klingmon serve`` the receiver answers Kling on uvicorn's loop. On that same loop
every stretch of the engine's own CPU work (a 500-task list page parsed, a round
planned) would hold each callback behind it, however short its store calls. On a loop
of its own in a thread, the interpreter switches between the two, so a busy engine
adds little to a callback's answer time: while it runs, a thread waiting for the
interpreter lock gets it within :data:`SWITCH_S` (Python's default is 5 ms), and
within :data:`ANSWER_SWITCH_S` while an answer is being given: an answer waits for
the lock again after each SQLite statement and socket write, some twenty times. The
engine and the receiver meet only in the store (its write gate, which puts a
callback's commit and answer before the engine's work, and its in-process wake-up
channel).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
from typing import TYPE_CHECKING

from klingmon.store import writer_gate

if TYPE_CHECKING:
    from collections.abc import Callable

    from klingmon.api import AsyncKlingClient
    from klingmon.engine._monitor import Monitor

__all__ = ["ANSWER_SWITCH_S", "SWITCH_S", "EngineThread"]

#: The interpreter's switch interval (seconds) while an engine thread runs.
SWITCH_S = 0.0002
#: The switch interval while a callback is being answered: its thread takes the
#: interpreter lock back sooner each time, at the price of more switches for the
#: few milliseconds the answer lasts.
ANSWER_SWITCH_S = 0.00002
#: The cyclic collector's third threshold while an engine thread runs: a full
#: collection walks every object the engine holds (95 ms with 2,000 tasks in
#: flight, every thread stopped), so it comes a tenth as often as by default.
FULL_GC_EVERY = 100


class EngineThread:
    """Runs ``monitor`` forever on its own loop in a thread, until :meth:`stop`."""

    def __init__(
        self,
        monitor: Monitor,
        *,
        client: AsyncKlingClient | None = None,
        on_exit: Callable[[], None] | None = None,
        name: str = "klingmon-engine",
    ) -> None:
        self._monitor = monitor
        #: Closed on the engine's loop, the only one that used it.
        self._client = client
        self._on_exit = on_exit
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._error: BaseException | None = None
        #: The switch interval before :meth:`start`, restored when the engine ends.
        self._switch = sys.getswitchinterval()
        #: The switch interval while the engine runs (set by :meth:`start`).
        self._running_switch = min(self._switch, SWITCH_S)
        #: The collector's thresholds before :meth:`start`, restored likewise.
        self._gc = gc.get_threshold()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    def start(self) -> None:
        """Start the engine; returns once its loop runs."""
        self._switch = sys.getswitchinterval()
        self._running_switch = switch = min(self._switch, SWITCH_S)
        sys.setswitchinterval(switch)
        self._gc = first, second, third = gc.get_threshold()
        gc.set_threshold(first, second, max(third, FULL_GC_EVERY))
        self._thread.start()
        self._ready.wait()

    def wake(self) -> None:
        """Run a round now (thread-safe): a dashboard action stored new work."""
        self._call(lambda: self._monitor.engine().wake())

    def stop(self) -> None:
        """Finish the current round and stop (thread-safe)."""
        self._call(self._monitor.stop)

    async def join(self) -> None:
        """Wait for the engine to stop; re-raise what stopped it, if anything."""
        await asyncio.to_thread(self._thread.join)
        if self._error is not None:
            raise self._error

    def _call(self, action: Callable[[], None]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(action)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        finally:
            sys.setswitchinterval(self._switch)
            gc.set_threshold(*self._gc)
            self._ready.set()  # never leave start() waiting on a loop that failed
            if self._on_exit is not None:
                self._on_exit()

    async def _run(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        gate = writer_gate(self._monitor.store)

        # As a callback's answer starts, this loop stands still (a few ms at most)
        # once the step it runs ends: its work would take turns with the answer's.
        def stand_still() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(gate.yield_to_answers)

        unhook = gate.on_answer(stand_still)
        switch = self._running_switch
        unswitch = gate.while_answering(
            lambda: sys.setswitchinterval(min(switch, ANSWER_SWITCH_S)),
            lambda: sys.setswitchinterval(switch),
        )
        self._ready.set()
        try:
            await self._monitor.run(forever=True)
        except BaseException as exc:  # noqa: BLE001 - handed to join()
            self._error = exc
        finally:
            unswitch()
            unhook()
            if self._client is not None:  # with every account's built here
                await self._monitor.close_clients()
