"""Fixtures for the simulator's unit tests: in-process, on a virtual clock."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest
from simhelp import API_KEY, config

from klingmon.sim import SimConfig, Simulator
from klingmon.testing import VirtualClock

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
async def connect(
    clock: VirtualClock,
) -> AsyncIterator[Callable[..., Awaitable[tuple[Simulator, httpx.AsyncClient]]]]:
    """Open a simulator and an authenticated client over its in-process transport."""
    clients: list[httpx.AsyncClient] = []

    async def _connect(
        sim_config: SimConfig | None = None,
        *,
        callback_transport: httpx.AsyncBaseTransport | None = None,
        auth: bool = True,
    ) -> tuple[Simulator, httpx.AsyncClient]:
        sim = Simulator(
            sim_config or config(),
            clock=clock,
            callback_transport=callback_transport,
        )
        headers = {"Authorization": f"Bearer {API_KEY}"} if auth else {}
        client = httpx.AsyncClient(
            transport=sim.transport(), base_url="http://sim.test", headers=headers
        )
        clients.append(client)
        return sim, client

    yield _connect
    for client in clients:
        await client.aclose()
