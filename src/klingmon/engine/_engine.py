"""The engine loop: submit within the slots, watch what Kling holds, feed the hooks.

Every fact is written to the store before anything depends on it, so the process can
be killed at any instant and a restart picks up where it stopped: tasks left in
``submitting`` are looked up by their ``external_task_id`` before anything is sent
again, and leases of a dead worker simply expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from klingmon._clock import Clock, SystemClock, to_ms
from klingmon._owners import dead_local_owner as _dead_local_owner
from klingmon._owners import default_owner as _default_owner
from klingmon.domain import IN_FLIGHT, TaskStatus
from klingmon.downloads._manager import Downloader
from klingmon.engine._governor import Governor
from klingmon.engine._poller import CALLBACK_META_PREFIX, Poller
from klingmon.engine._settings import EngineSettings
from klingmon.engine._submitter import Submitter
from klingmon.errors import KlingmonError, StoreError
from klingmon.hooks._hooks import HookEvent, Hooks
from klingmon.policy import (
    DurationBook,
    backoff,
)

if TYPE_CHECKING:
    from klingmon.api import AsyncKlingClient
    from klingmon.store import Store

__all__ = ["CALLBACK_META_PREFIX", "Engine"]

logger = logging.getLogger(__name__)

#: Seconds between heartbeats (and between looks for dead local workers).
_HEARTBEAT = 5.0
#: Without hooks, the outbox is only marked delivered: once a second is enough.
_HOOKLESS_DELIVERY = 1.0
#: Busy rounds ask whether the work is done at most this often (seconds).
_DONE_CHECK = 1.0


class Engine(Submitter, Poller):
    """Runs submission, monitoring and hook delivery against one store."""

    def __init__(
        self,
        store: Store,
        client: AsyncKlingClient,
        *,
        settings: EngineSettings | None = None,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
    ) -> None:
        self.store = store
        self.client = client
        self.settings = settings or EngineSettings()
        self.hooks = hooks or Hooks()
        self.clock = clock or SystemClock()
        self.owner = owner or _default_owner()
        self.governor = Governor(
            self.clock,
            slots=self.settings.slots,
            rate=self.settings.rate,
            max_rate=self.settings.max_rate,
        )
        self.book = DurationBook.load(store.meta.load_stats())
        self._rng = random.Random(self.settings.seed)
        self._requests = asyncio.Semaphore(self.settings.parallel_requests)
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._counts: Counter[tuple[int, str]] = Counter()
        self._next_watchdog = 0.0
        self._slots_free = True
        self._callbacks_seen: dict[str, float] = {}
        # -- downloads: owed files are fetched in the background, beside the rounds
        wanted = self.settings.downloads
        self.downloader: Downloader | None = (
            Downloader(store, wanted, clock=self.clock, owner=self.owner)
            if wanted is not None and wanted.auto
            else None
        )
        self._downloads: asyncio.Task[None] | None = None
        self._callbacks_read: dict[str, float] = {}
        self._polled_at: dict[str, float] = {}
        self._poll_gaps: dict[str, float] = {}
        self._next_heartbeat = 0.0
        self._next_hookless_delivery = 0.0
        self._next_done_check = 0.0
        #: The only batch whose tasks this run sends (None: every batch's).
        self._scope: int | None = None

    # -- control -------------------------------------------------------------

    def wake(self) -> None:
        """Run a round now (a callback arrived, new work was stored)."""
        self._wake.set()

    def stop(self) -> None:
        """Finish the current round, release leases and return from :meth:`run`."""
        self._stop.set()
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def note_callback(self, endpoint: str, *, finish: bool = False) -> None:
        """Callbacks flow for this endpoint: its polls fall back to a safety net.

        A ``finish`` (a hint to confirm, or a final status applied) frees a slot and
        may owe files, so it wakes the engine; other news wakes it only for hooks.
        A round costs a dozen queries, and most callbacks say "processing".
        """
        self._callbacks_seen[endpoint] = self.clock.now()
        if finish or self.hooks:
            self.wake()

    async def run(
        self,
        *,
        until_done: int | None = None,
        forever: bool = False,
        scope: int | None = None,
    ) -> None:
        """Work until stopped, or until batch ``until_done`` (or everything) is done.

        Given ``scope``, only that batch's tasks are sent: other batches wait for a
        run that names them (or none). Tasks Kling already holds are watched and
        their files fetched whatever their batch: that costs nothing and frees the
        slots every batch shares.
        """
        self._scope = scope
        self._reclaim_dead_leases()
        if self.downloader is not None:
            self.store.downloads.ensure_downloads(to_ms(self.clock.now()))
        loop = asyncio.get_running_loop()

        def wake_soon() -> None:  # from the listening thread
            loop.call_soon_threadsafe(self.wake)

        stop_listening = self.store.fleet.listen(wake_soon)
        try:
            while not self._stop.is_set():
                did = await self.step()
                if not forever and self._done_now(did) and self._done(until_done):
                    break
                await self._idle(did)
        finally:
            stop_listening()
            await self._stop_downloads()
            self._flush()
            self.store.fleet.release(self.owner)
            self.store.fleet.worker_stopped(self.owner, to_ms(self.clock.now()))

    async def step(self) -> bool:
        """One round of every duty; True when it did any work."""
        self._heartbeat()
        # Polls first: a finish they find frees a slot that this same round fills.
        did = await self._poll_round()
        did = await self._submit_round() or did
        did = self._watchdog() or did
        did = await self._deliver_round() or did
        did = self._download_round() or did
        self._flush()
        return did

    def _heartbeat(self) -> None:
        """Tell the fleet we live; share the request budget among live workers."""
        now = self.clock.now()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + _HEARTBEAT
        now_ms = to_ms(now)
        self.store.fleet.heartbeat(self.owner, now_ms, {"slots": self.settings.slots})
        alive = sum(w.alive for w in self.store.fleet.workers(now_ms))
        self.governor.share(max(1, alive))
        self._reclaim_dead_leases()

    def _reclaim_dead_leases(self) -> None:
        # A worker on this host that was killed left leases; other hosts' leases
        # simply expire, since we cannot see their processes.
        for owner in self.store.fleet.lease_owners():
            if owner != self.owner and _dead_local_owner(owner):
                self.store.fleet.release(owner)
                logger.info("lease.reclaimed", extra={"owner": owner})

    # -- hooks ---------------------------------------------------------------

    async def _deliver_round(self) -> bool:
        now = self.clock.now()
        if not self.hooks:
            if now < self._next_hookless_delivery:
                return False
            self._next_hookless_delivery = now + _HOOKLESS_DELIVERY
        now_ms = to_ms(now)
        items = self.store.outbox.claim_outbox(
            self.owner, now_ms, self._lease_ms(), 500
        )
        if not items:
            return False
        if not self.hooks:
            self.store.outbox.delivered([item.id for item in items], now_ms)
            return True
        done: list[int] = []
        for item in items:
            task = self.store.tasks.task(item.event.task_id)
            if task is None:
                done.append(item.id)
                continue
            try:
                await self.hooks.deliver(HookEvent(item.event, task))
            except Exception as exc:  # noqa: BLE001 - a user's hook may raise anything
                delay = backoff(item.attempts + 1, base=1.0, cap=300.0, rng=self._rng)
                self.store.outbox.failed(
                    item.id,
                    now_ms,
                    f"{type(exc).__name__}: {exc}",
                    now_ms + to_ms(delay),
                )
                logger.warning(
                    "hook.failed",
                    extra={"event": item.event.id, "error": type(exc).__name__},
                )
            else:
                done.append(item.id)
        self.store.outbox.delivered(done, to_ms(self.clock.now()))
        return True

    # -- downloads -----------------------------------------------------------

    def _download_round(self) -> bool:
        """Start fetching owed files in the background, unless already at it."""
        if self.downloader is None:
            return False
        running = self._downloads
        if running is not None:
            if not running.done():
                return False
            self._downloads = None
            failed = None if running.cancelled() else running.exception()
            if isinstance(failed, StoreError):
                # The store cannot record what is fetched, nor what is sent: stop.
                self.stop()
                raise failed
            if failed is not None:
                logger.error(
                    "download.round_failed", extra={"error": type(failed).__name__}
                )
        if self.store.downloads.next_download_ms() is None:
            return False
        self._downloads = asyncio.create_task(
            self._download_all(self.downloader), name="klingmon-downloads"
        )
        return False  # started, not done: the round wakes the loop when it ends

    async def _download_all(self, downloader: Downloader) -> None:
        claimed = False
        try:
            while not self._stop.is_set() and await downloader.round():
                claimed = True
        finally:
            if claimed:  # files held by another worker: look again when idle
                self.wake()

    async def _stop_downloads(self) -> None:
        running, self._downloads = self._downloads, None
        if running is not None and not running.done():
            if self._stop.is_set():
                running.cancel()  # the part file stays; the next run resumes it
            with contextlib.suppress(asyncio.CancelledError, KlingmonError):
                await running
        if self.downloader is not None:
            await self.downloader.aclose()

    # -- helpers -------------------------------------------------------------

    def _done_now(self, did: bool) -> bool:
        """Whether to ask if the work is done: after an idle round, and at least
        once a second of busy ones (other batches may keep every round busy)."""
        now = self.clock.now()
        if did and now < self._next_done_check:
            return False
        self._next_done_check = now + _DONE_CHECK
        return True

    def _done(self, batch_id: int | None) -> bool:
        if self.store.tasks.has_tasks((TaskStatus.QUEUED, *IN_FLIGHT), batch_id):
            return False
        if self.downloader is not None and (
            (self._downloads is not None and not self._downloads.done())
            or self.store.downloads.next_download_ms(batch_id) is not None
        ):
            return False
        if self.store.outbox.outbox_backlog():
            self._next_hookless_delivery = 0.0  # only that is left: deliver it now
            return False
        return True

    async def _idle(self, did: bool) -> None:
        if did:
            await asyncio.sleep(0)
            return
        now = self.clock.now()
        due = self.store.watch.next_due_ms(
            include_queued=self._slots_free, queued_batch_id=self._scope
        )
        wait = self.settings.idle_max
        if due is not None:
            wait = min(wait, max(0.0, due / 1000 - now, self._held_until() - now))
        wait = min(wait, max(0.0, self._next_watchdog - now))
        wait = max(wait, 0.01)
        self._wake.clear()
        sleeper = asyncio.ensure_future(self.clock.asleep(wait))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    def _lease_ms(self) -> int:
        return to_ms(self.settings.lease_seconds)

    def _flush(self) -> None:
        if self._counts:
            by_batch: dict[int, dict[str, int]] = defaultdict(dict)
            for (batch_id, name), value in self._counts.items():
                by_batch[batch_id][name] = value
            for batch_id, counts in by_batch.items():
                self.store.reports.bump(counts, batch_id)
            self._counts.clear()
        if self.book.dirty:
            self.store.meta.save_stats(self.book.dump(dirty_only=True))
