"""The engine: submission within the slots, monitoring, hooks; and the Monitor front."""

from klingmon.engine._engine import Engine
from klingmon.engine._monitor import Monitor, new_task
from klingmon.engine._settings import EngineSettings

__all__ = ["Engine", "EngineSettings", "Monitor", "new_task"]
