"""Submission: within each pool's slots, written ahead, never paid twice.

A pool is what Kling counts concurrency in (account x model version x pack type);
each has its own learned limit, and a 1303 shrinks only the pool it came from.

The intent to create is committed (``submitting``) before the POST; a task found in
``submitting`` after a crash is looked up by its ``external_task_id`` before anything
is sent again, and a 1201 (the id may already exist) is looked up before it counts as
a refusal. 1303 puts a task back in the queue and shrinks the slots; other transient
failures wait and retry; Kling's refusals are final (``rejected``).

Whatever a create or a lookup finds is recorded through the same store write as a
poll (a task found already finished owes its files), and frees its slot and feeds the
learned durations the same way. Nothing is sent once the store has failed a write:
a create whose answer cannot be recorded would be paid for and then forgotten.

Both API generations go the same way: a new-generation task (``/<family>/<model>``)
is created with ``client.submit`` and looked up by ``GET /tasks?external_task_ids=``,
where an unknown id is simply missing; both answer a :class:`Snapshot`. A task whose
generation these credentials cannot reach (an access/secret pair only, on the new
generation) stops the engine with a ConfigError before anything is stored or sent.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from enum import Enum
from typing import TYPE_CHECKING, Final

from klingmon._clock import to_ms
from klingmon.api import Generation, GenericRequest, generation_of, snapshot
from klingmon.domain import IN_FLIGHT, Snapshot, TaskStatus
from klingmon.errors import (
    ApiError,
    ConfigError,
    KlingmonError,
    StoreError,
    TaskNotFoundError,
)
from klingmon.policy import (
    ACCOUNT_POOL,
    CreateAction,
    backoff,
    classify_create_error,
    pool_members,
)
from klingmon.store import SpendCaps

if TYPE_CHECKING:
    import random
    from collections.abc import Callable

    from klingmon._clock import Clock
    from klingmon.api import AsyncKlingClient
    from klingmon.engine._clients import AccountClients
    from klingmon.engine._governor import Governor
    from klingmon.engine._offload import Offload
    from klingmon.engine._settings import EngineSettings
    from klingmon.engine._shared import Demand, Finishes, PollPlanner, RequestCounts
    from klingmon.store import PoolUse, Store, TaskRow

__all__ = ["Submitter"]

logger = logging.getLogger(__name__)


class _Lookup(Enum):
    #: The lookup itself failed for now; the task was rescheduled to try again.
    FAILED = "failed"


_LOOKUP_FAILED: Final = _Lookup.FAILED


class Submitter:
    """Sends queued tasks within the account's slots; adopts lost answers."""

    def __init__(
        self,
        store: Store,
        clients: AccountClients,
        *,
        settings: EngineSettings,
        clock: Clock,
        owner: str,
        governor: Governor,
        requests: asyncio.Semaphore,
        counts: RequestCounts,
        planner: PollPlanner,
        demand: Demand,
        finishes: Finishes,
        rng: random.Random,
        offload: Offload,
        stop: Callable[[], None],
        stopping: Callable[[], bool],
    ) -> None:
        self._store = store
        self._clients = clients
        self._settings = settings
        self._clock = clock
        self._owner = owner
        self._governor = governor
        self._requests = requests
        self._counts = counts
        self._planner = planner
        self._demand = demand
        self._finishes = finishes
        self._rng = rng
        self._off = offload
        self._stop = stop
        self._stopping = stopping
        #: Whether the last round found a free slot (the idle wait asks).
        self.slots_free = True
        #: The only batch whose tasks are sent this run (None: every batch's).
        self.scope: int | None = None

    async def round(self, now: float) -> bool:
        """Send what the free slots allow; True when anything was claimed."""
        counts = await self._off(self._store.tasks.count_by_status, statuses=IN_FLIGHT)
        held = await self._held(now, sum(counts.values()))
        # Queued work a held or paused batch keeps back does not wait for a slot.
        queued = await self._off(
            functools.partial(self._store.tasks.has_tasks, skip_held=True),
            (TaskStatus.QUEUED,),
            self.scope,
        )
        self._demand.see(queued)
        if not counts.get(TaskStatus.SUBMITTING) and (
            not self.slots_free or not queued
        ):
            return False
        s = self._settings
        rows = await self._off(
            functools.partial(
                self._store.tasks.claim_submissions,
                slots=self._governor.slots.limit,
                pools=(
                    {p: self._governor.limit(p) for p in held if _counted(p)}
                    if s.pooled
                    else None
                ),
                pooled=s.pooled,
                batch_id=self.scope,
                aging_ms=to_ms(s.priority_aging),
                caps=SpendCaps(s.daily_units, s.monthly_units),
                account_caps={
                    name: SpendCaps(daily, monthly)
                    for name, daily, monthly in s.account_caps
                },
            ),
            self._owner,
            to_ms(now),
            to_ms(s.lease_seconds),
        )
        if not rows:
            return False
        results = await asyncio.gather(
            *(
                self._submit_one(row, held.get(self._pool(row) or ACCOUNT_POOL, 0))
                for row in rows
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return True

    async def _held(self, now: float, in_flight: int) -> dict[str, int]:
        """Slots held per pool (every pool with some held or work queued); notes
        whether a queued task of some pool fits in its free slots."""
        if not self._settings.pooled:
            self.slots_free = self._governor.slots.available(in_flight) > 0
            return {ACCOUNT_POOL: in_flight}
        use = await self._off(self._store.tasks.pool_use, to_ms(now))
        held = {u.pool: u.held for u in use}
        for u in use:  # a spread pool's members: each account's pool of its model
            for member in pool_members(u.pool):
                held.setdefault(member, 0)
        # A pool whose every queued task is bigger than its free slots waits for a
        # finish: the idle wait must not spin on it (a spread pool: on any member).
        self.slots_free = not any(u.queued for u in use) or any(
            self._fits(u, member, held)
            for u in use
            if u.queued
            for member in pool_members(u.pool)
        )
        return held

    def _fits(self, use: PoolUse, member: str, held: dict[str, int]) -> bool:
        taken = held.get(member, 0)
        return not taken or taken + use.need <= self._governor.limit(member)

    def _client(self, row: TaskRow) -> AsyncKlingClient:
        """The client of the account ``row`` was placed on (fixed at its claim)."""
        return self._clients.of(row.account)

    def _pool(self, row: TaskRow) -> str | None:
        """The pool ``row``'s slots are counted in (None: the account's, unpooled)."""
        return row.pool if self._settings.pooled else None

    async def _submit_one(self, row: TaskRow, in_flight: int) -> None:
        try:
            await self._send(row, in_flight)
        except (StoreError, ConfigError):
            # What is sent from now on could not be recorded (or reach Kling at
            # all): send nothing more.
            self._stop()
            raise

    async def _send(self, row: TaskRow, in_flight: int) -> None:
        # Before any write or request: a new-generation task needs an API key.
        self._client(row).check_endpoint(row.endpoint)
        if row.status == TaskStatus.SUBMITTING:
            found = await self._adopt_existing(row)
            if found:
                return
        else:
            row = await self._off(
                self._store.tasks.mark_submitting, row.id, to_ms(self._clock.now())
            )
        request = GenericRequest(task_path=row.endpoint, payload=dict(row.body))
        callback = (
            self._settings.callback_url(row.external_task_id)
            if self._settings.callback_url
            else None
        )
        task: Snapshot | None = None
        try:
            async with self._requests, self._governor.request():
                if not self._stopping():
                    self._counts.add(row.batch_id, "create")
                    task = await self._create(row, request, callback)
        except KlingmonError as exc:
            await self._create_failed(row, exc, in_flight)
            return
        if task is None:
            # The run stopped (a refused key) before this task was sent, and Kling
            # holds none under its external id (never sent, or looked up above):
            # it goes back to the queue as it was, and a resume sends it plainly.
            now_ms = to_ms(self._clock.now())
            await self._off(
                self._store.tasks.requeue, row.id, now_ms, now_ms, "not sent: stopped"
            )
            return
        now_ms = to_ms(self._clock.now())
        first = self._planner.delay(
            row, now_ms, status=TaskStatus.SUBMITTED, elapsed=0.0
        )
        await self._recorded(row, task, now_ms + to_ms(first))
        logger.info(
            "task.submitted",
            extra={"task": row.id, "task_id": task.task_id, "batch": row.batch_id},
        )

    async def _create(
        self, row: TaskRow, request: GenericRequest, callback: str | None
    ) -> Snapshot:
        """POST the task, in its generation's way; what Kling answered."""
        client = self._client(row)
        if _is_new(row.endpoint):
            return await client.submit(
                request, external_task_id=row.external_task_id, callback_url=callback
            )
        task = await client.create(
            request, external_task_id=row.external_task_id, callback_url=callback
        )
        return snapshot(task)

    async def _adopt_existing(self, row: TaskRow) -> bool:
        """A create whose outcome is unknown: look before sending it again."""
        task = await self._look_up(row)
        if task is None:
            return False
        if isinstance(task, Snapshot):
            await self._recorded(row, task, to_ms(self._clock.now()))
            logger.info("task.adopted", extra={"task": row.id, "task_id": task.task_id})
        return True

    async def _look_up(self, row: TaskRow) -> Snapshot | _Lookup | None:
        """The task Kling holds under ``row``'s external id; None when it has none;
        ``_LOOKUP_FAILED`` when the lookup failed for now (``row`` then retries)."""
        try:
            async with self._requests, self._governor.request():
                self._counts.add(row.batch_id, "get")
                client = self._client(row)
                if _is_new(row.endpoint):
                    # An unknown external id is simply missing from the answer.
                    found = await client.fetch_external(
                        row.endpoint, [row.external_task_id]
                    )
                    return found.get(row.external_task_id)
                task = await client.get(
                    row.endpoint, external_task_id=row.external_task_id
                )
                return snapshot(task)
        except TaskNotFoundError:
            return None
        except KlingmonError as exc:
            if not exc.retryable:
                raise
            await self._retry_later(row, exc)
            return _LOOKUP_FAILED

    async def _recorded(self, row: TaskRow, task: Snapshot, next_poll_ms: int) -> None:
        """Store what Kling holds for ``row``, and act on it as a poll's change."""
        now_ms = to_ms(self._clock.now())
        change = await self._off(
            self._store.tasks.mark_submitted,
            row.id,
            task,
            now_ms,
            next_poll_ms,
        )
        if change is not None:
            self._finishes.applied([change], {row.id: row})

    async def _create_failed(
        self, row: TaskRow, exc: KlingmonError, in_flight: int
    ) -> None:
        action = classify_create_error(exc)
        now_ms = to_ms(self._clock.now())
        code = exc.code if isinstance(exc, ApiError) else None
        if code in {1302, 1303}:
            self._counts.add(row.batch_id, str(code))
        if action is CreateAction.LOOK_UP:
            # "external_task_id already exists" is a 1201 too: the task may be there.
            task = await self._look_up(row)
            if task is _LOOKUP_FAILED:
                return
            if isinstance(task, Snapshot):
                await self._recorded(row, task, to_ms(self._clock.now()))
                logger.info(
                    "task.adopted_duplicate",
                    extra={"task": row.id, "task_id": task.task_id},
                )
                return
            action = CreateAction.REJECT
        if action is CreateAction.REQUEUE:
            self._governor.on_concurrency_error(in_flight, self._pool(row))
            delay = backoff(1, base=1.0, cap=10.0, rng=self._rng) + 1.0
            await self._off(
                self._store.tasks.requeue,
                row.id,
                now_ms,
                now_ms + to_ms(delay),
                exc.message,
            )
        elif action is CreateAction.REJECT:
            await self._off(self._store.tasks.reject, row.id, now_ms, exc.message, code)
            logger.warning("task.rejected", extra={"task": row.id, "code": code})
        elif action is CreateAction.HALT:
            await self._off(
                self._store.tasks.requeue, row.id, now_ms, now_ms, exc.message
            )
            self._stop()
            raise exc
        else:
            await self._retry_later(row, exc)

    async def _retry_later(self, row: TaskRow, exc: KlingmonError) -> None:
        # Still ``submitting``: the next attempt looks the task up before any POST.
        s = self._settings
        delay = (
            backoff(
                row.submit_attempts,
                base=s.submit_backoff_base,
                cap=s.submit_backoff_cap,
                rng=self._rng,
            )
            + s.submit_backoff_base
        )
        now_ms = to_ms(self._clock.now())
        await self._off(self._store.watch.schedule, [(row.id, now_ms + to_ms(delay))])
        logger.info(
            "task.submit_retry",
            extra={"task": row.id, "error": type(exc).__name__, "delay": delay},
        )


def _counted(pool: str) -> bool:
    """Whether Kling counts ``pool`` (a spread pool is only a waiting room)."""
    return len(pool_members(pool)) == 1


def _is_new(endpoint: str) -> bool:
    """Whether ``endpoint`` is of the new generation (``/<family>/<model>``)."""
    return generation_of(endpoint) is Generation.V2026
