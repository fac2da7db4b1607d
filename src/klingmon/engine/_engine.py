"""The engine loop: submit within the slots, watch what Kling holds, feed the hooks.

Every fact is written to the store before anything depends on it, so the process can
be killed at any instant and a restart picks up where it stopped: tasks left in
``submitting`` are looked up by their ``external_task_id`` before anything is sent
again, and leases of a dead worker simply expire.

The engine composes its duties (:class:`Submitter`, :class:`Poller`,
:class:`Watchdog`, :class:`Deliverer`, :class:`DownloadLoop`), each a plain class
given what it uses; it owns the loop, the wake-up and the fleet heartbeat. One
channel wakes it: the store's notices (in-process listeners at once, PostgreSQL
NOTIFY across processes). Store calls run off the event loop (:class:`Offload`), so
that callbacks served on the same loop never wait on a round.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from typing import TYPE_CHECKING

from klingmon._clock import Clock, SystemClock, to_ms
from klingmon._owners import dead_local_owner as _dead_local_owner
from klingmon._owners import default_owner as _default_owner
from klingmon.domain import IN_FLIGHT, TaskStatus
from klingmon.downloads import Downloader
from klingmon.engine._account import Account, AccountRefresh
from klingmon.engine._clients import AccountClients
from klingmon.engine._deliverer import Deliverer
from klingmon.engine._download_loop import DownloadLoop
from klingmon.engine._governor import Governor
from klingmon.engine._offload import Offload
from klingmon.engine._poller import Poller
from klingmon.engine._settings import EngineSettings
from klingmon.engine._shared import (
    CallbackDrops,
    CallbackFlow,
    Demand,
    Finishes,
    PollPlanner,
    RequestCounts,
)
from klingmon.engine._submitter import Submitter
from klingmon.engine._watchdog import Watchdog
from klingmon.hooks import Hooks
from klingmon.policy import DurationBook
from klingmon.store import writer_gate

if TYPE_CHECKING:
    from collections.abc import Callable

    from klingmon.api import AsyncKlingClient
    from klingmon.store import Notice, Store

__all__ = ["Engine"]

logger = logging.getLogger(__name__)

#: Seconds between heartbeats (and between looks for dead local workers).
_HEARTBEAT = 5.0
#: Busy rounds ask whether the work is done at most this often (seconds).
_DONE_CHECK = 1.0


class Engine:
    """Runs submission, monitoring and hook delivery against one store."""

    def __init__(
        self,
        store: Store,
        client: AsyncKlingClient | None = None,
        *,
        settings: EngineSettings | None = None,
        hooks: Hooks | None = None,
        clock: Clock | None = None,
        owner: str | None = None,
        account: Account | None = None,
        clients: AccountClients | None = None,
    ) -> None:
        """``clients``: one per account (each task goes with its account's);
        without them ``client`` is the default account's, the only one."""
        if clients is None:
            if client is None:
                raise TypeError("Engine needs a client or clients")
            clients = AccountClients.single(client)
        self.store = store
        self.clients = clients
        #: The client of account-wide asks (packs): the default account's.
        self.client = client if client is not None else clients.of(clients.primary)
        self.settings = s = settings or EngineSettings()
        self.hooks = hooks or Hooks()
        self.clock = clock or SystemClock()
        self.owner = owner or _default_owner()
        self.governor = Governor(
            self.clock,
            slots=s.slots,
            rate=s.rate,
            max_rate=s.max_rate,
            pools=dict(s.pools),
            accounts=dict(s.account_slots),
        )
        self.book = DurationBook.load(store.meta.load_stats())
        self._wake = asyncio.Event()
        self._stop = asyncio.Event()
        self._next_heartbeat = 0.0
        self._next_done_check = 0.0
        # An in-memory SQLite store has one connection: two threads must not share it.
        # Its writes go after a waiting callback's commit (serve shares the process).
        gate = writer_gate(store)
        self._off = Offload(
            inline=store.flow.in_memory,
            around=gate.background,
            pause=gate.yield_to_answers,
        )
        rng = random.Random(s.seed)
        self._counts = RequestCounts()
        self._flow = CallbackFlow(store, self.clock, s)
        #: The learned share of final callbacks that never come (``.rate``, and
        #: ``.counts``: what it is from), which prices the polls that find them.
        self.drops = CallbackDrops()
        self._finishes = Finishes(self.governor, self.book, self.drops)
        demand = Demand()
        planner = PollPlanner(s, self.book, self._flow, rng, demand, drops=self.drops)
        requests = asyncio.Semaphore(s.parallel_requests)
        self.poller = Poller(
            store,
            clients,
            settings=s,
            clock=self.clock,
            owner=self.owner,
            governor=self.governor,
            requests=requests,
            counts=self._counts,
            planner=planner,
            demand=demand,
            finishes=self._finishes,
            offload=self._off,
            drops=self.drops,
        )
        self.submitter = Submitter(
            store,
            clients,
            settings=s,
            clock=self.clock,
            owner=self.owner,
            governor=self.governor,
            requests=requests,
            counts=self._counts,
            planner=planner,
            demand=demand,
            finishes=self._finishes,
            rng=rng,
            offload=self._off,
            stop=self.stop,
            stopping=self._stop.is_set,
        )
        self.watchdog = Watchdog(store, settings=s, book=self.book, offload=self._off)
        self.deliverer = Deliverer(
            store,
            self.hooks,
            settings=s,
            clock=self.clock,
            owner=self.owner,
            rng=rng,
            offload=self._off,
        )
        #: Refreshes the account's packs while work runs (given an ``account``).
        self.account: AccountRefresh | None = (
            AccountRefresh(store, self.client, account, offload=self._off)
            if account is not None
            else None
        )
        wanted = s.downloads
        self.downloads: DownloadLoop | None = (
            DownloadLoop(
                store,
                Downloader(store, wanted, clock=self.clock, owner=self.owner),
                offload=self._off,
                wake=self.wake,
                stop=self.stop,
                stopping=self._stop.is_set,
            )
            if wanted is not None and wanted.auto
            else None
        )

    # -- control -------------------------------------------------------------

    @property
    def downloader(self) -> Downloader | None:
        return None if self.downloads is None else self.downloads.downloader

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
        self._flow.note(endpoint)
        if finish or self.hooks:
            self.wake()

    def hear(self, notice: Notice) -> None:
        """A store notice, on the engine's loop: callbacks came, or news to act on."""
        if not notice.endpoints:
            self.wake()
        for endpoint in sorted(notice.endpoints):
            self.note_callback(endpoint, finish=notice.finish)

    def listener(self, loop: asyncio.AbstractEventLoop) -> Callable[[Notice], None]:
        """A thread-safe :meth:`hear` for ``store.flow.listen_here``."""

        def heard(notice: Notice) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.hear, notice)

        return heard

    def _callbacks_active(self, endpoint: str) -> bool:
        return self._flow.active(endpoint)

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
        self.submitter.scope = scope
        await self._reclaim_dead_leases()
        if self._finishes.mark is None:
            self._finishes.start_at(await self._off(self.store.flow.last_event_id))
        if self.downloads is not None:
            await self._off(
                self.store.downloads.ensure_downloads, to_ms(self.clock.now())
            )
        loop = asyncio.get_running_loop()

        def wake_soon() -> None:  # from the listening thread
            loop.call_soon_threadsafe(self.wake)

        stop_listening = self.store.fleet.listen(wake_soon)
        stop_hearing = self.store.flow.listen_here(self.listener(loop))
        try:
            while not self._stop.is_set():
                did = await self.step()
                if not forever and self._done_now(did) and await self._done(until_done):
                    break
                await self._idle(did)
        finally:
            stop_hearing()
            stop_listening()
            if self.account is not None:
                await self.account.close()
            if self.downloads is not None:
                await self.downloads.close()
            await self._flush()
            await self._off(self.store.fleet.release, self.owner)
            await self._off(
                self.store.fleet.worker_stopped, self.owner, to_ms(self.clock.now())
            )

    async def step(self) -> bool:
        """One round of every duty; True when it did any work."""
        # A wake from here on (a callback while this round awaits) makes the idle
        # wait after it return at once.
        self._wake.clear()
        await self._heartbeat()
        await self._catch_up()
        if self.account is not None:
            await self.account.round(self.clock.now())
        # Polls first: a finish they find frees a slot that this same round fills.
        did = await self.poller.round(self.clock.now())
        did = await self.submitter.round(self.clock.now()) or did
        did = await self.watchdog.round(self.clock.now()) or did
        did = await self.deliverer.round(self.clock.now()) or did
        if self.downloads is not None:
            did = await self.downloads.round(self.clock.now()) or did
        await self._flush()
        return did

    async def _catch_up(self) -> None:
        """Act on the status changes others recorded (a receiver's, another
        worker's): each frees its slot and teaches its duration here too."""
        store = self.store
        if self._finishes.mark is None:
            self._finishes.start_at(await self._off(store.flow.last_event_id))
        mark = self._finishes.mark or 0
        while True:
            found = await self._off(store.flow.changes_since, mark)
            self._finishes.caught_up(found)
            if len(found) < 1000:
                return
            mark = found[-1].event_id

    async def _heartbeat(self) -> None:
        """Tell the fleet we live; share the request budget among live workers."""
        now = self.clock.now()
        if now < self._next_heartbeat:
            return
        self._next_heartbeat = now + _HEARTBEAT
        now_ms = to_ms(now)
        store = self.store
        # ``scope``: the batch this run sends (None: every batch), so that a run of
        # another batch leaves it the slots its priority earns.
        info = {
            "slots": self.settings.slots,
            "scope": self.submitter.scope,
            "pools": self.governor.pools.limits(),
        }
        await self._off(store.fleet.heartbeat, self.owner, now_ms, info)
        alive = sum(w.alive for w in await self._off(store.fleet.workers, now_ms))
        self.governor.share(max(1, alive))
        await self._reclaim_dead_leases()

    async def _reclaim_dead_leases(self) -> None:
        # A worker on this host that was killed left leases; other hosts' leases
        # simply expire, since we cannot see their processes.
        store = self.store
        for owner in await self._off(store.fleet.lease_owners):
            if owner != self.owner and _dead_local_owner(owner):
                await self._off(store.fleet.release, owner)
                logger.info("lease.reclaimed", extra={"owner": owner})

    # -- helpers -------------------------------------------------------------

    def _done_now(self, did: bool) -> bool:
        """Whether to ask if the work is done: after an idle round, and at least
        once a second of busy ones (other batches may keep every round busy)."""
        now = self.clock.now()
        if did and now < self._next_done_check:
            return False
        self._next_done_check = now + _DONE_CHECK
        return True

    async def _done(self, batch_id: int | None) -> bool:
        store = self.store
        # Queued tasks of a held batch (awaiting approval, paused: budget) wait for
        # a person: the run is done without them.
        if await self._off(
            functools.partial(store.tasks.has_tasks, skip_held=True),
            (TaskStatus.QUEUED, *IN_FLIGHT),
            batch_id,
        ):
            return False
        if self.downloads is not None and (
            self.downloads.busy
            or await self._off(store.downloads.next_download_ms, batch_id) is not None
        ):
            return False
        if await self._off(store.outbox.outbox_backlog):
            self.deliverer.hurry()  # only that is left: deliver it now
            return False
        return True

    async def _idle(self, did: bool) -> None:
        if did:
            await asyncio.sleep(0)
            return
        now = self.clock.now()
        due = await self._off(
            self.store.watch.next_due_ms,
            include_queued=self.submitter.slots_free,
            queued_batch_id=self.submitter.scope,
        )
        wait = self.settings.idle_max
        if due is not None:
            held = self.poller.held_until()
            wait = min(wait, max(0.0, due / 1000 - now, held - now))
        wait = min(wait, max(0.0, self.watchdog.next_at - now))
        wait = max(wait, 0.01)
        sleeper = asyncio.ensure_future(self.clock.asleep(wait))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def _flush(self) -> None:
        store = self.store
        for batch_id, counts in self._counts.take().items():
            await self._off(store.reports.bump, counts, batch_id)
        if self.book.dirty:
            await self._off(store.meta.save_stats, self.book.dump(dirty_only=True))
