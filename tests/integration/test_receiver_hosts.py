"""DNS rebinding: a foreign Host gets 400 on every route, before any route runs."""

from __future__ import annotations

import httpx
import pytest
from receiver_support import fresh_clock, tracked_store, url
from web_support import SECRET, body

from klingmon.testing import AppServer
from klingmon.web import ReceiverSettings, create_app

EVIL = "rebind.attacker.example"
PUBLIC = "https://km.example.com/"


@pytest.fixture
def rig(tmp_path):
    """A receiver with a tracked task under uvicorn on loopback."""
    clock = fresh_clock()
    with tracked_store(tmp_path, clock) as store:
        app = create_app(
            store,
            secret=SECRET,
            settings=ReceiverSettings(confirm=False),
            clock=clock,
            allowed_hosts=["km.example.com"],
        )
        with AppServer(app) as server:
            yield server, store, clock


READS = [
    "/",
    "/batches/b",
    "/tasks/1",
    "/events",
    "/login",
    "/files/1",
    "/api/batches",
    "/api/tasks/1",
    "/api/tasks/1/events",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/static/dashboard.css",
]


def test_a_rebound_name_reads_nothing(rig):
    """The issue's curl: the same loopback server answers 400 to the attacker's Host."""
    server, _, _ = rig
    port = server.url.rsplit(":", 1)[1]
    with httpx.Client(base_url=server.url) as http:
        for path in READS:
            answer = http.get(path, headers={"Host": f"{EVIL}:{port}"})
            assert answer.status_code == 400, path
            assert answer.json()["error"] == "bad_host"
            assert "km-0" not in answer.text
        mine = http.get("/api/tasks/1", headers={"Host": f"localhost:{port}"})
    assert mine.status_code == 200
    assert mine.json()["external_task_id"] == "km-0"


def test_loopback_names_and_the_public_host_are_served(rig):
    """localhost, 127.0.0.0/8, [::1] (any port) and the configured name pass."""
    server, _, _ = rig
    with httpx.Client(base_url=server.url) as http:
        for host in ("localhost", "127.0.0.1:1", "127.1.2.3", "[::1]:9", PUBLIC[8:-1]):
            answer = http.get("/api/tasks/1", headers={"Host": host})
            assert answer.status_code == 200, host


def test_a_callback_with_a_foreign_host_changes_nothing(rig):
    """Even a right token is refused under a foreign Host; the public host passes."""
    server, store, clock = rig
    raw = body(0, "processing", clock)
    with httpx.Client(base_url=server.url) as http:
        refused = http.post(url(0), content=raw, headers={"Host": EVIL})
        assert store.tasks.task("km-0").status == "submitted"
        taken = http.post(url(0), content=raw, headers={"Host": "km.example.com"})
    assert refused.status_code == 400
    assert taken.status_code == 200
    assert store.tasks.task("km-0").status == "processing"


def test_health_answers_any_host(rig):
    """Probes address a server by IP; the health routes hold nothing to read."""
    server, _, _ = rig
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/healthz", headers={"Host": EVIL}).status_code == 200
        assert http.get("/readyz", headers={"Host": "10.1.2.3"}).status_code == 200


def test_a_missing_host_is_refused(rig):
    """HTTP/1.0 without a Host header names nothing: 400."""
    import socket  # noqa: PLC0415 - only this test speaks raw HTTP

    server, _, _ = rig
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /api/tasks/1 HTTP/1.0\r\n\r\n")
        head = sock.recv(64)
    assert head.startswith(b"HTTP/1.1 400"), head
