"""``klingmon sim``: the simulator under uvicorn, until interrupted."""

from __future__ import annotations

import logging

import uvicorn

from klingmon.sim._config import SimConfig
from klingmon.sim._simulator import Simulator

__all__ = ["run"]

logger = logging.getLogger(__name__)


def run(
    config: SimConfig = SimConfig(), *, host: str = "127.0.0.1", port: int = 8765
) -> None:
    """Serve a simulator on ``host:port``; blocks until interrupted (Ctrl-C)."""
    sim = Simulator(config)
    logger.info("sim.serving", extra={"host": host, "port": port})
    uvicorn.run(
        sim.app,
        host=host,
        port=port,
        log_level="info",
        lifespan="on",
        date_header=False,  # Date comes from the simulator's clock
    )
