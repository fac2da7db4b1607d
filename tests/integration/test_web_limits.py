"""Hostile request bodies against the web app under uvicorn on loopback.

Each test names the protection it guards; removing that protection makes it
fail (the server would buffer, or wait for, a body it should refuse).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import pytest

from klingmon.store import Store
from klingmon.testing import AppServer
from klingmon.web import Limits, callback_token, create_app

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SECRET = b"k" * 32
TIMEOUT = 1.0
TEN_MB = 10 * 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AppServer]:
    with Store.open(str(tmp_path / "k.db")) as store:
        app = create_app(
            store,
            secret=SECRET,
            limits=Limits(max_body=256 * 1024, body_timeout=TIMEOUT),
        )
        with AppServer(app) as running:
            yield running


def _connect(server: AppServer) -> socket.socket:
    host, port = server.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=5)


def _status(sock: socket.socket) -> int:
    """The response's status code (reads the head only)."""
    head = b""
    while b"\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return int(head.split(b" ", 2)[1])


def _head(method: str, path: str, extra: str) -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{extra}\r\n"
    ).encode()


def _callback_path() -> str:
    return f"/callbacks/kling/{callback_token(SECRET, 'km-0')}"


@pytest.mark.parametrize("path", [_callback_path(), "/login"])
def test_declared_oversized_body_refused_before_reading(server: AppServer, path: str):
    """Guards the Content-Length cap: a 10 MB claim gets 413 after 1 KB was sent."""
    start = time.monotonic()
    with _connect(server) as sock:
        sock.sendall(_head("POST", path, f"Content-Length: {TEN_MB}\r\n") + b"{" * 1024)
        assert _status(sock) == 413
    assert time.monotonic() - start < 2.0


def test_streamed_oversized_body_cut_off(server: AppServer):
    """Guards the streamed-size cap: a chunked 10 MB body is never read to the end."""
    chunk = b"x" * 65536
    frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    sent = 0
    status: int | None = None
    with _connect(server) as sock:
        sock.sendall(_head("POST", "/login", "Transfer-Encoding: chunked\r\n"))
        try:
            while sent < TEN_MB:
                sock.sendall(frame)
                sent += len(chunk)
            sock.sendall(b"0\r\n\r\n")
            status = _status(sock)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # refused and closed mid-stream: the body was not buffered
    assert status in (None, 413), status
    with _connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert _status(sock) == 200


@pytest.mark.parametrize("path", [_callback_path(), "/login"])
def test_slow_loris_body_cut_off(server: AppServer, path: str):
    """Guards the body read deadline: a body trickled byte by byte gets 408 in time."""
    stop = threading.Event()
    with _connect(server) as sock:
        sock.sendall(_head("POST", path, "Content-Length: 1000\r\n"))

        def trickle() -> None:
            while not stop.wait(0.1):
                try:
                    sock.sendall(b" ")
                except OSError:
                    return

        thread = threading.Thread(target=trickle, daemon=True)
        start = time.monotonic()
        thread.start()
        try:
            status = _status(sock)
            elapsed = time.monotonic() - start
        finally:
            stop.set()
            thread.join(timeout=5)
    assert status == 408
    assert TIMEOUT * 0.8 <= elapsed < TIMEOUT + 2.0, elapsed


def test_body_within_limits_still_read(server: AppServer):
    """A normal callback body passes the limits to the receiver (403: not its token)."""
    body = b'{"task_id": "kt-0", "task_status": "succeed"}'
    with _connect(server) as sock:
        sock.sendall(
            _head("POST", _callback_path(), f"Content-Length: {len(body)}\r\n") + body
        )
        assert _status(sock) == 403
