"""The engine: submission within the slots, monitoring, hooks; and the Monitor front."""

from klingmon.engine._account import (
    ACCOUNT_KEY,
    ACCOUNT_REFRESH,
    Account,
    AccountRefresh,
    stored_figures,
)
from klingmon.engine._clients import AccountClients
from klingmon.engine._engine import Engine
from klingmon.engine._health import (
    DEFAULT_GIVE_UP_AFTER,
    Health,
    HealthTransport,
    env_transport,
)
from klingmon.engine._monitor import Monitor, new_task
from klingmon.engine._settings import EngineSettings
from klingmon.engine._thread import EngineThread

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_REFRESH",
    "DEFAULT_GIVE_UP_AFTER",
    "Account",
    "AccountClients",
    "AccountRefresh",
    "Engine",
    "EngineSettings",
    "EngineThread",
    "Health",
    "HealthTransport",
    "Monitor",
    "env_transport",
    "new_task",
    "stored_figures",
]
