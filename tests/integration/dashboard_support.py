"""Builders for the dashboard tests: a store with a finished, downloaded batch."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import httpx
from engine_support import loopback_monitor

from klingmon.api import Text2VideoRequest
from klingmon.downloads import DownloadSettings
from klingmon.sim import Faults, SimConfig
from klingmon.web import Dashboard, create_app

if TYPE_CHECKING:
    from pathlib import Path

    from fastapi import FastAPI

    from klingmon.store import Store
    from klingmon.testing import SimServer

__all__ = ["FAILING", "TOKEN", "Finished", "app_for", "client", "finish_batch"]

TOKEN = "dash-token-0123456789"


@dataclasses.dataclass
class Finished:
    """A finished batch ``b`` (some failed, videos downloaded under ``out``)."""

    db: Path
    out: Path
    sim_url: str


#: A fast simulator on which many tasks fail.
FAILING = SimConfig(admin=True, seed=3, time_scale=1000.0, faults=Faults(fail_rate=0.4))


def finish_batch(
    server: SimServer, tmp: Path, *, download: bool = True, n: int = 8
) -> Finished:
    """Run ``n`` tasks of batch ``b`` to the end, downloading the videos or not."""
    out = tmp / "out"
    monitor = loopback_monitor(server.url, server.sim, tmp / "k.db")
    if download:
        monitor.settings = dataclasses.replace(
            monitor.settings,
            downloads=DownloadSettings(out=str(out), allow_origins=(server.url,)),
        )
    prompts = [f"shot {i} <script>alert(1)</script>" for i in range(n)]
    monitor.submit([Text2VideoRequest(prompt=p) for p in prompts], batch="b")

    async def run() -> None:
        try:
            await monitor.run(batch="b")
        finally:
            await monitor.aclose()

    asyncio.run(run())
    return Finished(tmp / "k.db", out, server.url)


def app_for(store: Store, dashboard: Dashboard | None = None) -> FastAPI:
    return create_app(store, secret=b"s" * 32, dashboard=dashboard or Dashboard())


def client(app: FastAPI, **kwargs: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://localhost",
        **kwargs,  # type: ignore[arg-type]
    )
