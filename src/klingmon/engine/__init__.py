"""The engine: submission within the slots, monitoring, hooks; and the Monitor front."""

from klingmon.engine._batchfile import FileRow, read_batch_file, requests_from_text
from klingmon.engine._download_files import check_file, hash_file
from klingmon.engine._download_rules import (
    DEFAULT_ALLOW_HOSTS,
    DownloadError,
    DownloadEvent,
    DownloadRefusedError,
    DownloadSettings,
    check_url,
)
from klingmon.engine._downloads import Downloader
from klingmon.engine._engine import Engine
from klingmon.engine._filenames import DEFAULT_TEMPLATE, NameFields, render_name
from klingmon.engine._hooks import HookEvent, Hooks
from klingmon.engine._monitor import Monitor, new_task
from klingmon.engine._settings import EngineSettings

__all__ = [
    "DEFAULT_ALLOW_HOSTS",
    "DEFAULT_TEMPLATE",
    "DownloadError",
    "DownloadEvent",
    "DownloadRefusedError",
    "DownloadSettings",
    "Downloader",
    "Engine",
    "EngineSettings",
    "FileRow",
    "HookEvent",
    "Hooks",
    "Monitor",
    "NameFields",
    "check_file",
    "check_url",
    "hash_file",
    "new_task",
    "read_batch_file",
    "render_name",
    "requests_from_text",
]
