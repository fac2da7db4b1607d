"""What may be downloaded, and where to: settings, errors and the URL allowlist.

Only ``https`` URLs whose host is on the allowlist (Kling's CDN by default) are
fetched, or an exact origin named in ``allow_origins`` (a simulator, over http).
The same check runs on every redirect hop.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from urllib.parse import urlsplit

from klingmon.downloads._filenames import DEFAULT_TEMPLATE, check_template
from klingmon.errors import ConfigError, DownloadError, DownloadRefusedError

__all__ = [
    "DEFAULT_ALLOW_HOSTS",
    "DownloadError",
    "DownloadEvent",
    "DownloadRefusedError",
    "DownloadSettings",
    "check_url",
    "show_url",
]

#: Kling's result CDNs (the 2026 API's ``v15-kling-fdl.klingai.com`` included).
DEFAULT_ALLOW_HOSTS = ("cdn.klingai.com", "*.klingai.com")
_GIB = 1024**3


@dataclass(frozen=True, slots=True, kw_only=True)
class DownloadSettings:
    """Where results land and what may be fetched; ``auto``: on success, at once."""

    #: A local directory, or an fsspec URL (``s3://bucket/prefix``, needs ``storage``).
    out: str = "klingmon-downloads"
    template: str = DEFAULT_TEMPLATE
    allow_hosts: tuple[str, ...] = DEFAULT_ALLOW_HOSTS
    #: Exact ``scheme://host:port`` origins allowed even over http (a simulator).
    allow_origins: tuple[str, ...] = ()
    max_bytes: int = 2 * _GIB
    #: Bytes all parallel transfers may still bring at once: each reserves what its
    #: answer announces (``max_bytes`` when it announces nothing). None means
    #: ``max_bytes``: 2 GiB in total by default, however many files run in parallel.
    max_in_flight: int | None = None
    parallel: int = 4
    attempts: int = 5
    backoff_base: float = 1.0
    backoff_cap: float = 30.0
    timeout: float = 60.0
    lease_seconds: float = 600.0
    chunk_size: int = 256 * 1024
    #: Write ``<file>.json`` beside each file (request, ids, timings, URL, hash).
    sidecar: bool = True
    #: Download as soon as a task succeeds (the engine's duty); else on command.
    auto: bool = True
    #: Local folder for part files when ``out`` is remote (default: under ``out``'s
    #: hash in the system temp dir).
    staging: str | None = None
    #: Also fetch each video's and image's ``watermark_url`` variant (as a file of
    #: kind ``video-wm`` / ``image-wm``, named ``…-wm``); off by default.
    watermark: bool = False

    def __post_init__(self) -> None:
        check_template(self.template)
        if self.parallel < 1 or self.attempts < 1:
            raise ConfigError("download parallel and attempts must be at least 1")
        if self.max_bytes < 1:
            raise ConfigError("download max_bytes must be positive")
        if self.max_in_flight is not None and self.max_in_flight < self.max_bytes:
            raise ConfigError(
                f"download max_in_flight ({self.max_in_flight}) must be at least "
                f"max_bytes ({self.max_bytes}): one whole file must fit"
            )
        for origin in self.allow_origins:
            parts = urlsplit(origin)
            if parts.scheme not in {"http", "https"} or not parts.hostname:
                raise ConfigError(f"not an origin: {origin!r} (scheme://host:port)")

    @property
    def budget(self) -> int:
        """The bytes in flight across all parallel transfers, at most."""
        return self.max_bytes if self.max_in_flight is None else self.max_in_flight

    @property
    def remote(self) -> bool:
        return "://" in self.out and not self.out.startswith("file://")


@dataclass(frozen=True, slots=True)
class DownloadEvent:
    """Progress for a front end: ``start``, ``progress``, ``done`` or ``failed``."""

    kind: str
    download_id: int
    dest: str
    received: int = 0
    total: int | None = None
    error: str | None = None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.scheme}://{(parts.hostname or '').lower()}:{port}"


def check_url(url: str, settings: DownloadSettings) -> None:
    """Refuse a URL that is not https on an allowed host, nor an allowed origin."""
    try:
        parts = urlsplit(url)
        origin = _origin(url)
    except ValueError as exc:  # a port that is not a number, a broken IPv6 host
        raise DownloadRefusedError(f"refused {show_url(url)}: not a valid URL") from exc
    host = (parts.hostname or "").lower()
    if parts.username or parts.password:
        raise DownloadRefusedError(f"refused {show_url(url)}: credentials in the URL")
    origins = {_origin(o) for o in settings.allow_origins}
    if parts.scheme in {"http", "https"} and host and origin in origins:
        return
    if parts.scheme != "https":
        raise DownloadRefusedError(
            f"refused {show_url(url)}: only https URLs are fetched"
        )
    if not any(fnmatch.fnmatchcase(host, p.lower()) for p in settings.allow_hosts):
        raise DownloadRefusedError(
            f"refused {show_url(url)}: host {host!r} is not on the download allowlist"
        )


def show_url(url: str) -> str:
    """A URL with its port, without userinfo or query (signed URLs carry tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL)"
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"
