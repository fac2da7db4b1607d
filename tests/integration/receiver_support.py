"""Wiring for the receiver tests: engine + receiver + simulator over loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import uvicorn
from engine_support import loopback_monitor

from klingmon.store import Notice, Store
from klingmon.testing import AppServer, free_port
from klingmon.web import (
    ReceiverSettings,
    callback_url_builder,
    create_app,
    server_secret,
)

# The store and app builders of the unit web tests, shared rather than copied.
sys.path.insert(0, str(Path(__file__).parents[1] / "unit" / "web"))

from web_support import app_for, fresh_clock, tracked_store, url

if TYPE_CHECKING:
    from collections.abc import Callable

    from fastapi import FastAPI

    from klingmon.engine import Monitor
    from klingmon.testing import SimServer

__all__ = [
    "PortServer",
    "Rig",
    "app_for",
    "attach",
    "free_port",
    "fresh_clock",
    "rig",
    "tracked_store",
    "url",
]


class PortServer(AppServer):
    """An AppServer on a chosen port, so that a stopped receiver can come back."""

    def __init__(self, app: FastAPI, port: int) -> None:
        super().__init__(app)
        self.port = port

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", self.port))
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="on", http="h11", ws="none"
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._socket, self._server, self._thread = sock, server, thread
        self.url = f"http://127.0.0.1:{self.port}"
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive()
            assert time.monotonic() < deadline
            time.sleep(0.01)


@dataclasses.dataclass
class Rig:
    """A monitor whose submissions carry callback URLs of a receiver app."""

    monitor: Monitor
    app: FastAPI
    receiver_store: Store
    wake: list[Callable[[str, bool], None]]


def rig(
    sim_server: SimServer,
    db: Path,
    public_url: str,
    *,
    settings: ReceiverSettings | None = None,
) -> Rig:
    """The receiver's store is a second Store on the file, as in another process."""
    receiver_store = Store.open(str(db))
    secret = server_secret(receiver_store)
    wake: list[Callable[[Notice], None]] = []

    def heard(notice: Notice) -> None:
        for fn in wake:
            fn(notice)

    receiver_store.flow.listen_here(heard)
    app = create_app(receiver_store, secret=secret, settings=settings)
    monitor = loopback_monitor(sim_server.url, sim_server.sim, db)
    monitor.settings = dataclasses.replace(
        monitor.settings, callback_url=callback_url_builder(public_url, secret)
    )
    return Rig(monitor, app, receiver_store, wake)


def attach(r: Rig) -> None:
    """Let the receiver wake the engine (call inside the running loop)."""
    r.wake.append(r.monitor.engine().listener(asyncio.get_running_loop()))
