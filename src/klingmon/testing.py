"""Fakes and fixtures for testing code that talks to Kling, klingmon's own included.

- :class:`VirtualClock`: a :class:`~klingmon._clock.Clock` that only moves when told
  to or when something sleeps on it, so hours of Kling time pass in milliseconds.
- :class:`SimServer`: the simulator under uvicorn on loopback, in a background
  thread, for tests that need a real socket (curl-shaped requests, dropped
  connections, a CLI in a subprocess); :class:`AppServer` does the same for any
  ASGI app (a webhook receiver, say).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import TYPE_CHECKING, Self

import uvicorn

from klingmon.sim import SimConfig, Simulator

if TYPE_CHECKING:
    from types import TracebackType

    from starlette.types import ASGIApp

    from klingmon._clock import Clock

__all__ = ["AppServer", "SimServer", "VirtualClock", "free_port"]

#: 2026-05-28T08:00:00Z: a plausible "now" for JWT claims and epoch-ms stamps.
DEFAULT_START = 1_779_955_200.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 free right now, for a server started in a subprocess."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class VirtualClock:
    """A settable clock; sleeping on it moves it forward at once.

    Sleeping moves time to the sleeper's deadline (never backwards), so two
    coroutines sleeping at once do not add their waits together.
    """

    def __init__(self, start: float = DEFAULT_START) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def set(self, when: float) -> None:
        with self._lock:
            self._now = when

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds``; returns the new time."""
        with self._lock:
            self._now += max(0.0, seconds)
            return self._now

    def _reach(self, deadline: float) -> None:
        with self._lock:
            self._now = max(self._now, deadline)

    def sleep(self, seconds: float) -> None:
        self._reach(self.now() + max(0.0, seconds))

    async def asleep(self, seconds: float) -> None:
        deadline = self.now() + max(0.0, seconds)
        await asyncio.sleep(0)
        self._reach(deadline)

    def __repr__(self) -> str:
        return f"VirtualClock(now={self.now()!r})"


class AppServer:
    """Any ASGI app under uvicorn on 127.0.0.1 and a free port, in a thread.

    The socket is bound here (port 0) and handed to uvicorn, so the port is known
    before the server starts; :meth:`stop` asks uvicorn to exit and joins it.
    """

    def __init__(self, app: ASGIApp, *, startup_timeout: float = 10.0) -> None:
        self.app = app
        self._startup_timeout = startup_timeout
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this; without it Nagle + delayed ACK add ~40 ms
        # to every answer whose headers and body are written separately.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="on",
            loop="asyncio",
            http="h11",
            ws="none",
            access_log=False,
            date_header=False,  # the simulator sends Date from its own clock
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run,
            kwargs={"sockets": [sock]},
            name=f"klingmon-server-{port}",
            daemon=True,
        )
        self._socket, self._server, self._thread = sock, server, thread
        self.url = f"http://127.0.0.1:{port}"
        thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10.0)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"


class SimServer(AppServer):
    """A :class:`~klingmon.sim.Simulator` served by uvicorn on 127.0.0.1.

    ::

        with SimServer(SimConfig(admin=True, time_scale=600)) as server:
            client = KlingClient(api_key="sim-api-key", base_url=server.url)
            ...
            assert server.sim.counters()["answers_1303"] == 0

    The app's lifespan runs the callback dispatcher, so callbacks go out over
    the real network.
    """

    def __init__(
        self,
        config: SimConfig = SimConfig(admin=True),
        clock: Clock | None = None,
        *,
        startup_timeout: float = 10.0,
    ) -> None:
        self.sim = Simulator(config, clock=clock)
        super().__init__(self.sim.app, startup_timeout=startup_timeout)
