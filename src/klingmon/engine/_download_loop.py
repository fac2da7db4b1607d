"""Owed files, fetched in the background beside the rounds.

A round only starts the fetching when files are owed and none is under way; the
fetching wakes the engine when it ends, so that the next round sees what it left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from klingmon.errors import KlingmonError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from klingmon.downloads import Downloader
    from klingmon.engine._offload import Offload
    from klingmon.store import Store

__all__ = ["DownloadLoop"]

logger = logging.getLogger(__name__)


class DownloadLoop:
    """Runs one :class:`Downloader` at a time, in a task of its own."""

    def __init__(
        self,
        store: Store,
        downloader: Downloader,
        *,
        offload: Offload,
        wake: Callable[[], None],
        stop: Callable[[], None],
        stopping: Callable[[], bool],
    ) -> None:
        self._store = store
        self.downloader = downloader
        self._off = offload
        self._wake = wake
        self._stop = stop
        self._stopping = stopping
        self._running: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self._running is not None and not self._running.done()

    async def round(self, now: float) -> bool:  # noqa: ARG002 - one entry point
        """Start fetching owed files, unless already at it; never "did work"."""
        running = self._running
        if running is not None:
            if not running.done():
                return False
            self._running = None
            self._reap(running)
        if await self._off(self._store.downloads.next_download_ms) is None:
            return False
        self._running = asyncio.create_task(self._all(), name="klingmon-downloads")
        return False  # started, not done: the round wakes the loop when it ends

    def _reap(self, done: asyncio.Task[None]) -> None:
        failed = None if done.cancelled() else done.exception()
        if isinstance(failed, StoreError):
            # The store cannot record what is fetched, nor what is sent: stop.
            self._stop()
            raise failed
        if failed is not None:
            logger.error(
                "download.round_failed", extra={"error": type(failed).__name__}
            )

    async def _all(self) -> None:
        claimed = False
        try:
            while not self._stopping() and await self.downloader.round():
                claimed = True
        finally:
            if claimed:  # files held by another worker: look again when idle
                self._wake()

    async def close(self) -> None:
        running, self._running = self._running, None
        if running is not None and not running.done():
            if self._stopping():
                running.cancel()  # the part file stays; the next run resumes it
            with contextlib.suppress(asyncio.CancelledError, KlingmonError):
                await running
        await self.downloader.aclose()
