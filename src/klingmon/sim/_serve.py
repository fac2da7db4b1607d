"""``klingmon sim``: the simulator under uvicorn, until interrupted."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import uvicorn

from klingmon.sim._accounts import SimAccounts
from klingmon.sim._config import SimConfig
from klingmon.sim._simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["run"]

logger = logging.getLogger(__name__)


def run(
    config: SimConfig = SimConfig(),
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    accounts: Mapping[str, SimConfig] | None = None,
) -> None:
    """Serve a simulator on ``host:port``; blocks until interrupted (Ctrl-C).

    ``accounts``: several named accounts instead of ``config``'s one (see
    :class:`~klingmon.sim.SimAccounts`).
    """
    app = SimAccounts(accounts).app if accounts else Simulator(config).app
    logger.info("sim.serving", extra={"host": host, "port": port})
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        lifespan="on",
        date_header=False,  # Date comes from the simulator's clock
    )
