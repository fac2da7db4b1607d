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
from klingmon.api import AsyncKlingClient, GenericRequest, Task
from klingmon.api._models import TERMINAL, TaskStatus
from klingmon.engine._downloads import Downloader
from klingmon.engine._governor import Governor
from klingmon.engine._hooks import HookEvent, Hooks
from klingmon.engine._owners import dead_local_owner as _dead_local_owner
from klingmon.engine._owners import default_owner as _default_owner
from klingmon.engine._settings import EngineSettings
from klingmon.errors import ApiError, KlingmonError, TaskNotFoundError
from klingmon.policy import (
    CreateAction,
    DurationBook,
    Phase,
    backoff,
    classify_create_error,
    is_stuck,
    next_poll_delay,
    timed_out,
)
from klingmon.store import Observation, Store

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.store import Change, TaskRow

__all__ = ["CALLBACK_META_PREFIX", "Engine"]

logger = logging.getLogger(__name__)

#: ``meta`` key prefix (+ endpoint) where a receiver notes its last callback (epoch s),
#: so that an engine in another process sees callbacks flowing too.
CALLBACK_META_PREFIX = "callbacks.last:"

_IN_FLIGHT = (TaskStatus.SUBMITTING, TaskStatus.SUBMITTED, TaskStatus.PROCESSING)


class Engine:
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
        self.book = DurationBook.load(store.load_stats())
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

    def note_callback(self, endpoint: str) -> None:
        """Callbacks flow for this endpoint: its polls fall back to a safety net."""
        self._callbacks_seen[endpoint] = self.clock.now()

    async def run(
        self, *, until_done: int | None = None, forever: bool = False
    ) -> None:
        """Work until stopped, or until batch ``until_done`` (or everything) is done."""
        self._reclaim_dead_leases()
        if self.downloader is not None:
            self.store.ensure_downloads(to_ms(self.clock.now()))
        try:
            while not self._stop.is_set():
                did = await self.step()
                if not forever and self._done(until_done):
                    break
                await self._idle(did)
        finally:
            await self._stop_downloads()
            self._flush()
            self.store.release(self.owner)

    async def step(self) -> bool:
        """One round of every duty; True when it did any work."""
        did = await self._submit_round()
        did = await self._poll_round() or did
        did = self._watchdog() or did
        did = await self._deliver_round() or did
        did = self._download_round() or did
        self._flush()
        return did

    def _reclaim_dead_leases(self) -> None:
        # A worker on this host that was killed left leases; other hosts' leases
        # simply expire, since we cannot see their processes.
        for owner in self.store.lease_owners():
            if owner != self.owner and _dead_local_owner(owner):
                self.store.release(owner)
                logger.info("lease.reclaimed", extra={"owner": owner})

    # -- submission ----------------------------------------------------------

    async def _submit_round(self) -> bool:
        counts = self.store.count_by_status()
        in_flight = sum(counts.get(s, 0) for s in _IN_FLIGHT)
        self._slots_free = self.governor.available_slots(in_flight) > 0
        if not counts.get(TaskStatus.SUBMITTING) and (
            not self._slots_free or not counts.get(TaskStatus.QUEUED)
        ):
            return False
        rows = self.store.claim_submissions(
            self.owner,
            to_ms(self.clock.now()),
            self._lease_ms(),
            slots=self.governor.slots.limit,
        )
        if not rows:
            return False
        results = await asyncio.gather(
            *(self._submit_one(row, in_flight) for row in rows), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return True

    async def _submit_one(self, row: TaskRow, in_flight: int) -> None:
        if row.status == TaskStatus.SUBMITTING:
            found = await self._adopt_existing(row)
            if found:
                return
        else:
            row = self.store.mark_submitting(row.id, to_ms(self.clock.now()))
        request = GenericRequest(task_path=row.endpoint, payload=dict(row.body))
        callback = (
            self.settings.callback_url(row.external_task_id)
            if self.settings.callback_url
            else None
        )
        try:
            async with self._requests, self.governor.request():
                self._counts[(row.batch_id, "create")] += 1
                task = await self.client.create(
                    request,
                    external_task_id=row.external_task_id,
                    callback_url=callback,
                )
        except KlingmonError as exc:
            self._create_failed(row, exc, in_flight)
            return
        now_ms = to_ms(self.clock.now())
        first = self._delay(row, now_ms, status=TaskStatus.SUBMITTED, elapsed=0.0)
        self.store.mark_submitted(row.id, task, now_ms, now_ms + to_ms(first))
        logger.info(
            "task.submitted",
            extra={"task": row.id, "task_id": task.task_id, "batch": row.batch_id},
        )

    async def _adopt_existing(self, row: TaskRow) -> bool:
        """A create whose outcome is unknown: look before sending it again."""
        try:
            async with self._requests, self.governor.request():
                self._counts[(row.batch_id, "get")] += 1
                task = await self.client.get(
                    row.endpoint, external_task_id=row.external_task_id
                )
        except TaskNotFoundError:
            return False
        except KlingmonError as exc:
            if not exc.retryable:
                raise
            self._retry_later(row, exc)
            return True
        now_ms = to_ms(self.clock.now())
        self.store.mark_submitted(row.id, task, now_ms, now_ms)
        logger.info("task.adopted", extra={"task": row.id, "task_id": task.task_id})
        return True

    def _create_failed(self, row: TaskRow, exc: KlingmonError, in_flight: int) -> None:
        action = classify_create_error(exc)
        now_ms = to_ms(self.clock.now())
        code = exc.code if isinstance(exc, ApiError) else None
        if code in {1302, 1303}:
            self._counts[(row.batch_id, str(code))] += 1
        if action is CreateAction.REQUEUE:
            self.governor.on_concurrency_error(in_flight)
            delay = backoff(1, base=1.0, cap=10.0, rng=self._rng) + 1.0
            self.store.requeue(row.id, now_ms, now_ms + to_ms(delay), exc.message)
        elif action is CreateAction.REJECT:
            self.store.reject(row.id, now_ms, exc.message, code)
            logger.warning("task.rejected", extra={"task": row.id, "code": code})
        elif action is CreateAction.HALT:
            self.store.requeue(row.id, now_ms, now_ms, exc.message)
            self.stop()
            raise exc
        else:
            self._retry_later(row, exc)

    def _retry_later(self, row: TaskRow, exc: KlingmonError) -> None:
        # Still ``submitting``: the next attempt looks the task up before any POST.
        s = self.settings
        delay = (
            backoff(
                row.submit_attempts,
                base=s.submit_backoff_base,
                cap=s.submit_backoff_cap,
                rng=self._rng,
            )
            + s.submit_backoff_base
        )
        now_ms = to_ms(self.clock.now())
        self.store.schedule([(row.id, now_ms + to_ms(delay))])
        logger.info(
            "task.submit_retry",
            extra={"task": row.id, "error": type(exc).__name__, "delay": delay},
        )

    # -- monitoring ----------------------------------------------------------

    async def _poll_round(self) -> bool:
        now_ms = to_ms(self.clock.now())
        due = self.store.claim_due(
            self.owner, now_ms, self._lease_ms(), self.settings.claim_limit
        )
        if not due:
            return False
        by_endpoint: dict[str, list[TaskRow]] = defaultdict(list)
        for row in due:
            by_endpoint[row.endpoint].append(row)
        seen: dict[int, tuple[TaskRow, Task, str]] = {}
        for endpoint, rows in by_endpoint.items():
            active = self.store.active(endpoint)
            if len(active) >= self.settings.sweep_min:
                seen.update(await self._sweep(endpoint, rows, active))
        missing = [row for row in due if row.id not in seen]
        singles = await asyncio.gather(*(self._get_one(row) for row in missing))
        for row, task in zip(missing, singles, strict=True):
            if task is not None:
                seen[row.id] = (row, task, "poll")
        now_ms = to_ms(self.clock.now())
        observations = [
            Observation(task_id=row.id, task=task, source=source, observed_ms=now_ms)
            for row, task, source in seen.values()
        ]
        changes = self.store.apply(observations, now_ms) if observations else []
        before = {row.id: row for row, _, _ in seen.values()}
        self._learn(changes, before)
        after = {c.task.id: c.task for c in changes}
        plan: list[tuple[int, int]] = []
        for row in list(before.values()) + [r for r in due if r.id not in before]:
            current = after.get(row.id, row)
            if current.status in TERMINAL:
                continue
            plan.append((row.id, now_ms + to_ms(self._delay(current, now_ms))))
        self.store.schedule(plan)
        for change in changes:
            if change.new_status in TERMINAL:
                self.governor.on_task_finished()
        return True

    async def _sweep(
        self, endpoint: str, due: Sequence[TaskRow], rows: Sequence[TaskRow]
    ) -> dict[int, tuple[TaskRow, Task, str]]:
        """List pages answer many tasks at once; order of the list is not relied on."""
        active = {row.task_id: row for row in rows if row.task_id}
        for row in due:
            if row.task_id:
                active[row.task_id] = row
        wanted = {row.id for row in due}
        found: dict[int, tuple[TaskRow, Task, str]] = {}
        batch_id = due[0].batch_id
        for page in range(1, self.settings.max_pages + 1):
            try:
                async with self._requests, self.governor.request():
                    self._counts[(batch_id, "list")] += 1
                    tasks = await self.client.list(
                        endpoint, page=page, page_size=self.settings.page_size
                    )
            except KlingmonError as exc:
                logger.warning(
                    "sweep.failed", extra={"endpoint": endpoint, "error": exc.message}
                )
                break
            for task in tasks:
                match = active.get(task.task_id)
                if match is not None:
                    found[match.id] = (match, task, "sweep")
            if wanted <= found.keys() or len(found) >= len(active):
                break
            if len(tasks) < self.settings.page_size:
                break
        return found

    async def _get_one(self, row: TaskRow) -> Task | None:
        try:
            async with self._requests, self.governor.request():
                self._counts[(row.batch_id, "get")] += 1
                if row.task_id:
                    return await self.client.get(row.endpoint, row.task_id)
                return await self.client.get(
                    row.endpoint, external_task_id=row.external_task_id
                )
        except KlingmonError as exc:
            logger.warning(
                "poll.failed", extra={"task": row.id, "error": type(exc).__name__}
            )
            return None

    def _delay(
        self,
        row: TaskRow,
        now_ms: int,
        *,
        status: TaskStatus | None = None,
        elapsed: float | None = None,
    ) -> float:
        status = status or row.status
        phase = Phase.PROCESSING if status == TaskStatus.PROCESSING else Phase.SUBMITTED
        if elapsed is None:
            start = _phase_start(row)
            elapsed = max(0.0, (now_ms - start) / 1000) if start else 0.0
        dist = self.book.get(row.key, phase)
        callbacks = self._callbacks_active(row.endpoint)
        delay = next_poll_delay(
            self.settings.schedule, dist, elapsed, callbacks=callbacks, rng=self._rng
        )
        if row.watch_timeout:
            delay = max(delay, self.settings.schedule.max_interval)
        return delay

    def _callbacks_active(self, endpoint: str) -> bool:
        # -- callbacks (web receiver): in-process notes, else the store's meta key
        now = self.clock.now()
        horizon = self.settings.schedule.safety_interval
        last = self._callbacks_seen.get(endpoint)
        if last is not None and now - last < horizon:
            return True
        # A receiver in another process notes its callbacks in the store; read that
        # at most once per min_interval per endpoint.
        if now - self._callbacks_read.get(endpoint, -horizon) >= (
            self.settings.schedule.min_interval
        ):
            self._callbacks_read[endpoint] = now
            raw = self.store.meta_get(CALLBACK_META_PREFIX + endpoint)
            if raw is not None:
                try:
                    noted = float(raw)
                except ValueError:
                    noted = None
                if noted is not None and noted > (last or 0.0):
                    self._callbacks_seen[endpoint] = last = noted
        return last is not None and now - last < horizon

    def _learn(self, changes: Sequence[Change], before: dict[int, TaskRow]) -> None:
        for change in changes:
            old = before.get(change.task.id)
            task = change.task
            if old is None:
                continue
            if change.new_status == TaskStatus.PROCESSING and task.kling_created_ms:
                start = task.kling_updated_ms or task.processing_ms
                if start:
                    self.book.observe(
                        task.key,
                        Phase.SUBMITTED,
                        (start - task.kling_created_ms) / 1000,
                    )
            elif (
                change.new_status == TaskStatus.SUCCEED
                and old.status == TaskStatus.PROCESSING
            ):
                start = _phase_start(old)
                end = task.kling_updated_ms or task.finished_ms
                if start and end and end > start:
                    self.book.observe(task.key, Phase.PROCESSING, (end - start) / 1000)

    # -- watchdog ------------------------------------------------------------

    def _watchdog(self) -> bool:
        now = self.clock.now()
        if now < self._next_watchdog:
            return False
        self._next_watchdog = now + self.settings.watchdog_interval
        now_ms = to_ms(now)
        did = False
        for row in self.store.active():
            if not row.stuck:
                phase = (
                    Phase.PROCESSING
                    if row.status == TaskStatus.PROCESSING
                    else Phase.SUBMITTED
                )
                start = _phase_start(row)
                elapsed = (now_ms - start) / 1000 if start else 0.0
                dist = self.book.get(row.key, phase)
                if is_stuck(self.settings.stuck, dist, phase, elapsed):
                    self.store.flag(
                        row.id,
                        "stuck",
                        now_ms,
                        {"phase": phase.value, "elapsed": elapsed},
                    )
                    logger.warning("task.stuck", extra={"task": row.id})
                    did = True
            if not row.watch_timeout and timed_out(row.deadline_ms, now_ms):
                self.store.flag(
                    row.id, "watch_timeout", now_ms, {"deadline_ms": row.deadline_ms}
                )
                logger.warning("task.watch_timeout", extra={"task": row.id})
                did = True
        return did

    # -- hooks ---------------------------------------------------------------

    async def _deliver_round(self) -> bool:
        now_ms = to_ms(self.clock.now())
        items = self.store.claim_outbox(self.owner, now_ms, self._lease_ms(), 500)
        if not items:
            return False
        if not self.hooks:
            self.store.delivered([item.id for item in items], now_ms)
            return True
        done: list[int] = []
        for item in items:
            task = self.store.task(item.event.task_id)
            if task is None:
                done.append(item.id)
                continue
            try:
                await self.hooks.deliver(HookEvent(item.event, task))
            except Exception as exc:  # noqa: BLE001 - a user's hook may raise anything
                delay = backoff(item.attempts + 1, base=1.0, cap=300.0, rng=self._rng)
                self.store.failed(
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
        self.store.delivered(done, to_ms(self.clock.now()))
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
            if not running.cancelled() and running.exception() is not None:
                logger.error(
                    "download.round_failed",
                    extra={"error": type(running.exception()).__name__},
                )
        if self.store.next_download_ms() is None:
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

    def _done(self, batch_id: int | None) -> bool:
        counts = self.store.count_by_status(batch_id)
        if any(counts.get(s, 0) for s in (TaskStatus.QUEUED, *_IN_FLIGHT)):
            return False
        if self.downloader is not None and (
            (self._downloads is not None and not self._downloads.done())
            or self.store.next_download_ms(batch_id) is not None
        ):
            return False
        return self.store.outbox_backlog() == 0

    async def _idle(self, did: bool) -> None:
        if did:
            await asyncio.sleep(0)
            return
        now_ms = to_ms(self.clock.now())
        due = self.store.next_due_ms(include_queued=self._slots_free)
        wait = self.settings.idle_max
        if due is not None:
            wait = min(wait, max(0.0, (due - now_ms) / 1000))
        wait = min(wait, max(0.0, self._next_watchdog - self.clock.now()))
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
                self.store.bump(counts, batch_id)
            self._counts.clear()
        if self.book.dirty:
            self.store.save_stats(self.book.dump(dirty_only=True))


def _phase_start(row: TaskRow) -> int | None:
    """When the task's current phase began, by Kling's clock where it told us."""
    if row.status == TaskStatus.PROCESSING:
        return row.kling_updated_ms or row.processing_ms or row.phase_ms
    return row.kling_created_ms or row.submitted_ms or row.phase_ms
