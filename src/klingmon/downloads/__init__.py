"""The download manager: owed result files fetched, checked, hashed and kept."""

from klingmon.downloads._filenames import DEFAULT_TEMPLATE, NameFields, render_name
from klingmon.downloads._files import check_file, hash_file
from klingmon.downloads._manager import Downloader
from klingmon.downloads._rules import (
    DEFAULT_ALLOW_HOSTS,
    DownloadError,
    DownloadEvent,
    DownloadRefusedError,
    DownloadSettings,
    check_url,
)

__all__ = [
    "DEFAULT_ALLOW_HOSTS",
    "DEFAULT_TEMPLATE",
    "DownloadError",
    "DownloadEvent",
    "DownloadRefusedError",
    "DownloadSettings",
    "Downloader",
    "NameFields",
    "check_file",
    "check_url",
    "hash_file",
    "render_name",
]
