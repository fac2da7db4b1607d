"""Both clients over real HTTP on loopback against the simulator (klingmon.testing).

Each scenario runs once with ``KlingClient`` and once with ``AsyncKlingClient``.
The simulator and the client share a VirtualClock, so that minutes of Kling time
pass as fast as the requests go and every wait is decided on virtual time.
"""

from __future__ import annotations

import inspect
import logging
import random
from typing import Any

import pytest

from klingmon.api import (
    AsyncKlingClient,
    JwtAuth,
    KlingClient,
    RetryPolicy,
    Task,
    Text2VideoRequest,
)
from klingmon.domain import TaskStatus
from klingmon.errors import (
    AuthError,
    ConcurrencyLimitError,
    TaskFailedError,
    WaitTimeoutError,
)
from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer, VirtualClock

REQUEST = Text2VideoRequest(prompt="a red fox running through snow", duration="5")


class Front:
    """One client, sync or async, called the same way from an async test."""

    def __init__(self, client: KlingClient | AsyncKlingClient) -> None:
        self.client = client

    async def __call__(self, method: str, *args: Any, **kwargs: Any) -> Any:
        result = getattr(self.client, method)(*args, **kwargs)
        return await result if inspect.isawaitable(result) else result

    @property
    def sent(self):
        return self.client.requests_sent


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


def _server(clock: VirtualClock, **faults: float) -> SimServer:
    config = SimConfig(admin=True, seed=7, faults=Faults(fail_rate=0.0, **faults))
    return SimServer(config, clock)


@pytest.fixture
def server(clock):
    with _server(clock) as running:
        yield running


@pytest.fixture(params=["sync", "async"])
async def front(request, server, clock):
    kwargs: dict[str, Any] = {
        "access_key": "sim-access-key",
        "secret_key": "sim-secret-key",
        "base_url": server.url,
        "clock": clock,
        "rng": random.Random(1),
        "retry": RetryPolicy(attempts=5, base=0.5, cap=4.0),
        "timeout": 10.0,
    }
    if request.param == "sync":
        client = KlingClient(**kwargs)
        yield Front(client)
        client.close()
    else:
        aclient = AsyncKlingClient(**kwargs)
        yield Front(aclient)
        await aclient.aclose()


def _routes(server: SimServer) -> dict[str, int]:
    return server.sim.counters()["requests_by_route"]


async def test_create_get_list_wait(front, server):
    """A task is created, found by id, external id and list, then waited on."""
    created = await front("create", REQUEST, external_task_id="it-1")
    assert created.task_status == "submitted"
    assert created.external_task_id == "it-1"
    by_id = await front("get", "text2video", created.task_id)
    assert by_id.task_id == created.task_id
    by_ext = await front("get", "/v1/videos/text2video", external_task_id="it-1")
    assert by_ext.task_id == created.task_id
    page = await front("list", "text2video", page=1, page_size=500)
    assert created.task_id in {t.task_id for t in page}
    done = await front("wait", "text2video", created)
    assert done.status is TaskStatus.SUCCEED
    assert done.urls
    again = await front("wait", "text2video", external_task_id="it-1")
    assert again.task_id == created.task_id
    counts = _routes(server)
    assert front.sent["create"] == counts["create"] == 1
    assert front.sent["list"] == counts["list"] == 1
    assert front.sent["get"] == counts["get"]


async def test_create_mints_external_id(front, server):
    """Without an external id the client mints one and the simulator stores it."""
    created = await front("create", REQUEST)
    assert created.external_task_id is not None
    assert created.external_task_id.startswith("km-")
    creates = server.sim.counters()["creates_per_external_id"]
    assert creates == {created.external_task_id: 1}


async def test_wait_failed_task(front, server):
    """A task that fails raises TaskFailedError carrying Kling's reason."""
    server.sim.set_faults(Faults(fail_rate=1.0))
    created = await front("create", REQUEST)
    with pytest.raises(TaskFailedError) as info:
        await front("wait", "text2video", created.task_id)
    assert info.value.task.status is TaskStatus.FAILED
    assert info.value.task.task_status_msg


async def test_wait_timeout_carries_last(front, server, clock):
    """A deadline shorter than the task raises WaitTimeoutError with the last state."""
    created = await front("create", REQUEST)
    start = clock.now()
    with pytest.raises(WaitTimeoutError) as info:
        await front("wait", "text2video", created.task_id, timeout=5)
    assert info.value.last is not None
    assert info.value.last.task_id == created.task_id
    assert info.value.last.status in {TaskStatus.SUBMITTED, TaskStatus.PROCESSING}
    assert clock.now() - start == pytest.approx(5, abs=0.5)


async def test_wait_stuck_task(front, server):
    """A task stuck in processing ends the wait with WaitTimeoutError, not a hang."""
    server.sim.set_faults(Faults(fail_rate=0.0, stuck_rate=1.0))
    created = await front("create", REQUEST)
    with pytest.raises(WaitTimeoutError) as info:
        await front("wait", "text2video", created.task_id, timeout=600)
    assert info.value.last is not None
    assert info.value.last.status is TaskStatus.PROCESSING
    assert front.sent["get"] < 40  # the interval grew to its cap


async def test_expired_token_reminted_once(front, server):
    """A 401/1004 re-mints the token and costs exactly one extra request."""
    created = await front("create", REQUEST)
    minted = front.client.auth.minted
    server.sim.script("get", status=401, code=1004)
    task = await front("get", "text2video", created.task_id)
    assert task.task_id == created.task_id
    assert front.sent["get"] == 2
    assert _routes(server)["get"] == 2
    assert front.client.auth.minted == minted + 1


async def test_a_skewed_clock_is_corrected_from_the_date_header(server, clock, caplog):
    """A clock over an hour behind: one refusal, then tokens on Kling's time."""
    behind = VirtualClock(clock.now() - 4000)
    with KlingClient(
        access_key="sim-access-key",
        secret_key="sim-secret-key",
        base_url=server.url,
        clock=behind,
    ) as client:
        created = client.create(REQUEST)
        assert client.requests_sent["create"] == 2
        assert client.get("text2video", created.task_id).task_id == created.task_id
        assert client.get("text2video", created.task_id).task_id == created.task_id
        assert client.requests_sent["get"] == 2
        assert isinstance(client.auth, JwtAuth)
        assert abs(client.auth.clock_offset - 4000) <= 2
    warnings = [r for r in caplog.records if r.getMessage() == "auth.clock_skew"]
    assert len(warnings) == 1
    assert list(server.sim.counters()["creates_per_external_id"].values()) == [1]


async def test_repeated_clock_refusals_do_not_loop(front, server):
    """Kling refusing every token: one re-mint per request, then a clear AuthError."""
    server.sim.script("get", status=401, code=1004, times=5)
    with pytest.raises(AuthError) as info:
        await front("get", "text2video", "1")
    assert info.value.code == 1004
    assert front.sent["get"] == 2
    assert "sim-secret-key" not in str(info.value)


async def test_get_retries_5xx(front, server):
    """Two 5xx answers then success: exactly three GETs reach the simulator."""
    created = await front("create", REQUEST)
    server.sim.script("get", status=500, code=5000)
    server.sim.script("get", status=502, body="<html><h1>502 Bad Gateway</h1></html>")
    task = await front("get", "text2video", created.task_id)
    assert task.task_id == created.task_id
    assert _routes(server)["get"] == 3
    assert front.sent["get"] == 3


async def test_list_only_returns_the_tasks_it_keeps(front, server):
    """A monitor that needs two tasks of a page gets those two, in one request."""
    made = [
        await front("create", REQUEST, external_task_id=f"only-{i}") for i in range(4)
    ]
    wanted = {made[0].task_id, made[2].task_id}
    offered: list[str] = []

    def keep(item):
        offered.append(item["task_id"])
        return item["task_id"] in wanted

    page = await front("list", "text2video", page=1, page_size=500, only=keep)
    assert {t.task_id for t in page} == wanted
    assert {t.task_id for t in made} <= set(offered)
    assert _routes(server)["list"] == 1


async def test_list_retries_rate_limit(front, server):
    """429/1302 on a list is retried with backoff."""
    server.sim.script("list", status=429, code=1302, times=2)
    assert await front("list", "text2video") == []
    assert _routes(server)["list"] == 3


async def test_dropped_create_resolved_without_duplicate(front, server):
    """A create stored then dropped is found by external id: one create only."""
    server.sim.script("create", status=200, drop=True)
    created = await front("create", REQUEST, external_task_id="it-drop")
    assert isinstance(created, Task)
    assert created.external_task_id == "it-drop"
    counters = server.sim.counters()
    assert counters["creates_per_external_id"] == {"it-drop": 1}
    assert counters["requests_by_route"]["create"] == 1
    assert front.sent["create"] == 1


async def test_create_5000_reposted(front, server):
    """Kling's 5000 on create means not created: POSTed again, one task in the end."""
    server.sim.script("create", status=500, code=5000)
    created = await front("create", REQUEST, external_task_id="it-5000")
    counters = server.sim.counters()
    assert counters["creates_per_external_id"] == {"it-5000": 1}
    assert counters["requests_by_route"]["create"] == 2
    assert created.external_task_id == "it-5000"


async def test_create_1303_raised(front, server):
    """1303 on create is raised at once for the engine's governor to handle."""
    server.sim.script("create", status=429, code=1303)
    with pytest.raises(ConcurrencyLimitError):
        await front("create", REQUEST)
    assert _routes(server)["create"] == 1


async def test_garbled_create_looked_up_then_reposted(front, server):
    """A garbled 2xx create answer is looked up first; not found, it is re-POSTed."""
    server.sim.script("create", status=200, body="<html>upstream cut</html>")
    created = await front("create", REQUEST, external_task_id="it-cut")
    assert created.external_task_id == "it-cut"
    counters = server.sim.counters()
    assert counters["creates_per_external_id"] == {"it-cut": 1}
    assert counters["requests_by_route"]["create"] == 2
    assert front.sent["get"] >= 1


async def test_logs_carry_no_secrets(front, server, caplog):
    """DEBUG exchange logs and INFO retry logs never carry a key or token."""
    caplog.set_level(logging.DEBUG, logger="klingmon")
    server.sim.script("get", status=503, code=5001)
    created = await front("create", REQUEST)
    await front("get", "text2video", created.task_id)
    token = front.client.auth.token()
    events = {record.getMessage() for record in caplog.records}
    assert {"kling.exchange", "kling.retry"} <= events
    for record in caplog.records:
        text = repr(record.__dict__)
        for secret in ("sim-secret-key", token, "Bearer"):
            assert secret not in text


async def test_api_key_auth(server, clock):
    """A plain API key works as a bearer, sync and async."""
    with KlingClient(api_key="sim-api-key", base_url=server.url, clock=clock) as client:
        assert client.list("text2video") == []
    async with AsyncKlingClient(
        api_key="sim-api-key", base_url=server.url, clock=clock
    ) as aclient:
        assert await aclient.list("text2video") == []
    with KlingClient(api_key="wrong", base_url=server.url, clock=clock) as client:
        with pytest.raises(AuthError):
            client.list("text2video")
        assert client.requests_sent["list"] == 1
