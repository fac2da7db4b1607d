"""Health: what is wrong with Kling now, and when the time allowed is spent."""

from __future__ import annotations

import httpx
import pytest

from klingmon.engine._health import (
    Health,
    HealthTransport,
    describe_answer,
    describe_failure,
)
from klingmon.sim import SimConfig, Simulator
from klingmon.testing import VirtualClock, free_port

URL = httpx.URL("http://127.0.0.1:9/v1/videos/text2video")


def test_fine_until_a_request_fails():
    """No trouble and no giving up before any failure, however long it is quiet."""
    clock = VirtualClock()
    health = Health(clock, give_up_after=10.0)
    clock.advance(3600)
    assert health.trouble() is None
    assert not health.gave_up()
    assert health.left() is None


def test_gives_up_only_after_the_time_allowed_without_an_answer():
    """Failures for less than the limit keep going; at the limit it gives up."""
    clock = VirtualClock()
    health = Health(clock, give_up_after=10.0)
    health.failed("cannot reach http://127.0.0.1:9 (connection refused)")
    clock.advance(6)
    health.failed("cannot reach http://127.0.0.1:9 (connection refused)")
    assert health.trouble() == "cannot reach http://127.0.0.1:9 (connection refused)"
    assert health.left() == 4.0
    assert not health.gave_up()
    clock.advance(4)
    assert health.gave_up()


def test_an_answer_resets_the_count_and_clears_the_trouble():
    """One answer from Kling starts the allowance over; the last error stays known."""
    clock = VirtualClock()
    health = Health(clock, give_up_after=10.0)
    health.failed("boom")
    clock.advance(9)
    health.ok()
    clock.advance(9)
    assert health.trouble() is None
    assert health.last_error == "boom"
    health.failed("boom again")
    clock.advance(9)
    assert not health.gave_up()


def test_without_a_limit_it_never_gives_up():
    """give_up_after=None: the trouble shows, the watch goes on."""
    clock = VirtualClock()
    health = Health(clock, give_up_after=None)
    health.failed("boom")
    clock.advance(10**6)
    assert not health.gave_up()
    assert health.trouble() == "boom"


def test_failures_read_as_one_line_with_the_origin_and_port():
    """Connection refused and timeouts name the origin with its port."""
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    assert (
        describe_failure(refused, URL)
        == "cannot reach http://127.0.0.1:9 (connection refused)"
    )
    timeout = httpx.ReadTimeout("timed out")
    assert describe_failure(timeout, URL).startswith(
        "no answer from http://127.0.0.1:9 in time"
    )


def test_answers_that_mean_trouble():
    """401/403 are refused credentials, 5xx a failing server, the rest contact."""
    assert describe_answer(401, URL) == (
        "http://127.0.0.1:9 refused the credentials (HTTP 401)"
    )
    assert describe_answer(503, URL) == "http://127.0.0.1:9 answered HTTP 503"
    for status in (200, 400, 404, 429):
        assert describe_answer(status, URL) is None


async def test_the_transport_reports_every_attempt():
    """A refused port, refused credentials and a real answer each reach Health."""
    clock = VirtualClock()
    health = Health(clock, give_up_after=10.0)
    closed = f"http://127.0.0.1:{free_port()}"
    refused = HealthTransport(httpx.AsyncHTTPTransport(), health)
    async with httpx.AsyncClient(transport=refused) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"{closed}/v1/videos/text2video")
    assert health.trouble() == f"cannot reach {closed} (connection refused)"
    sim = Simulator(SimConfig(), clock=clock)
    through_sim = HealthTransport(httpx.ASGITransport(app=sim.app), health)
    async with httpx.AsyncClient(
        transport=through_sim, base_url="http://sim.test"
    ) as client:
        wrong = await client.get(
            "/v1/videos/text2video", headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        assert health.trouble() == (
            "http://sim.test refused the credentials (HTTP 401)"
        )
        right = await client.get(
            "/v1/videos/text2video",
            headers={"Authorization": f"Bearer {sim.config.api_key}"},
        )
        assert right.status_code == 200
    assert health.trouble() is None
    assert (health.answers, health.failures) == (1, 2)
