"""The engine: submission within the slots, monitoring, hooks; and the Monitor front."""

from klingmon.engine._batchfile import FileRow, read_batch_file, requests_from_text
from klingmon.engine._engine import Engine
from klingmon.engine._hooks import HookEvent, Hooks
from klingmon.engine._monitor import Monitor, new_task
from klingmon.engine._settings import EngineSettings

__all__ = [
    "Engine",
    "EngineSettings",
    "FileRow",
    "HookEvent",
    "Hooks",
    "Monitor",
    "new_task",
    "read_batch_file",
    "requests_from_text",
]
