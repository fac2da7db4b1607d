"""Submission: within the account's slots, written ahead, never paid twice.

The intent to create is committed (``submitting``) before the POST; a task found in
``submitting`` after a crash is looked up by its ``external_task_id`` before anything
is sent again, and a 1201 (the id may already exist) is looked up before it counts as
a refusal. 1303 puts a task back in the queue and shrinks the slots; other transient
failures wait and retry; Kling's refusals are final (``rejected``).

Whatever a create or a lookup finds is recorded through the same store write as a
poll (a task found already finished owes its files), and frees its slot and feeds the
learned durations the same way. Nothing is sent once the store has failed a write:
a create whose answer cannot be recorded would be paid for and then forgotten.
"""

from __future__ import annotations

import asyncio
import logging
from enum import Enum
from typing import TYPE_CHECKING, Final

from klingmon._clock import to_ms
from klingmon.api import GenericRequest, snapshot
from klingmon.api._models import Task
from klingmon.domain import IN_FLIGHT, TERMINAL, TaskStatus
from klingmon.engine._state import EngineState
from klingmon.errors import ApiError, KlingmonError, StoreError, TaskNotFoundError
from klingmon.policy import CreateAction, backoff, classify_create_error

if TYPE_CHECKING:
    from klingmon.store import TaskRow

__all__ = ["Submitter"]

logger = logging.getLogger(__name__)


class _Lookup(Enum):
    #: The lookup itself failed for now; the task was rescheduled to try again.
    FAILED = "failed"


_LOOKUP_FAILED: Final = _Lookup.FAILED


class Submitter(EngineState):
    # -- submission ----------------------------------------------------------

    async def _submit_round(self) -> bool:
        counts = self.store.tasks.count_by_status(statuses=IN_FLIGHT)
        in_flight = sum(counts.values())
        self._slots_free = self.governor.available_slots(in_flight) > 0
        if not counts.get(TaskStatus.SUBMITTING) and (
            not self._slots_free
            or not self.store.tasks.has_tasks((TaskStatus.QUEUED,), self._scope)
        ):
            return False
        rows = self.store.tasks.claim_submissions(
            self.owner,
            to_ms(self.clock.now()),
            self._lease_ms(),
            slots=self.governor.slots.limit,
            batch_id=self._scope,
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
        try:
            await self._send(row, in_flight)
        except StoreError:
            # What is sent from now on could not be recorded: send nothing more.
            self.stop()
            raise

    async def _send(self, row: TaskRow, in_flight: int) -> None:
        if row.status == TaskStatus.SUBMITTING:
            found = await self._adopt_existing(row)
            if found:
                return
        else:
            row = self.store.tasks.mark_submitting(row.id, to_ms(self.clock.now()))
        request = GenericRequest(task_path=row.endpoint, payload=dict(row.body))
        callback = (
            self.settings.callback_url(row.external_task_id)
            if self.settings.callback_url
            else None
        )
        try:
            async with self._requests, self.governor.request():
                if self.stopping:  # still ``submitting``: looked up before any POST
                    return
                self._counts[(row.batch_id, "create")] += 1
                task = await self.client.create(
                    request,
                    external_task_id=row.external_task_id,
                    callback_url=callback,
                )
        except KlingmonError as exc:
            await self._create_failed(row, exc, in_flight)
            return
        now_ms = to_ms(self.clock.now())
        first = self._delay(row, now_ms, status=TaskStatus.SUBMITTED, elapsed=0.0)
        self._recorded(row, task, now_ms + to_ms(first))
        logger.info(
            "task.submitted",
            extra={"task": row.id, "task_id": task.task_id, "batch": row.batch_id},
        )

    async def _adopt_existing(self, row: TaskRow) -> bool:
        """A create whose outcome is unknown: look before sending it again."""
        task = await self._look_up(row)
        if task is None:
            return False
        if isinstance(task, Task):
            self._recorded(row, task, to_ms(self.clock.now()))
            logger.info("task.adopted", extra={"task": row.id, "task_id": task.task_id})
        return True

    async def _look_up(self, row: TaskRow) -> Task | _Lookup | None:
        """The task Kling holds under ``row``'s external id; None when it has none;
        ``_LOOKUP_FAILED`` when the lookup failed for now (``row`` then retries)."""
        try:
            async with self._requests, self.governor.request():
                self._counts[(row.batch_id, "get")] += 1
                return await self.client.get(
                    row.endpoint, external_task_id=row.external_task_id
                )
        except TaskNotFoundError:
            return None
        except KlingmonError as exc:
            if not exc.retryable:
                raise
            self._retry_later(row, exc)
            return _LOOKUP_FAILED

    def _recorded(self, row: TaskRow, task: Task, next_poll_ms: int) -> None:
        """Store what Kling holds for ``row``, and act on it as a poll's change."""
        now_ms = to_ms(self.clock.now())
        change = self.store.tasks.mark_submitted(
            row.id, snapshot(task), now_ms, next_poll_ms
        )
        if change is None:
            return
        self._learn([change], {row.id: row})
        if change.new_status in TERMINAL:
            self.governor.on_task_finished()

    async def _create_failed(
        self, row: TaskRow, exc: KlingmonError, in_flight: int
    ) -> None:
        action = classify_create_error(exc)
        now_ms = to_ms(self.clock.now())
        code = exc.code if isinstance(exc, ApiError) else None
        if code in {1302, 1303}:
            self._counts[(row.batch_id, str(code))] += 1
        if action is CreateAction.LOOK_UP:
            # "external_task_id already exists" is a 1201 too: the task may be there.
            task = await self._look_up(row)
            if task is _LOOKUP_FAILED:
                return
            if isinstance(task, Task):
                self._recorded(row, task, to_ms(self.clock.now()))
                logger.info(
                    "task.adopted_duplicate",
                    extra={"task": row.id, "task_id": task.task_id},
                )
                return
            action = CreateAction.REJECT
        if action is CreateAction.REQUEUE:
            self.governor.on_concurrency_error(in_flight)
            delay = backoff(1, base=1.0, cap=10.0, rng=self._rng) + 1.0
            self.store.tasks.requeue(row.id, now_ms, now_ms + to_ms(delay), exc.message)
        elif action is CreateAction.REJECT:
            self.store.tasks.reject(row.id, now_ms, exc.message, code)
            logger.warning("task.rejected", extra={"task": row.id, "code": code})
        elif action is CreateAction.HALT:
            self.store.tasks.requeue(row.id, now_ms, now_ms, exc.message)
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
        self.store.watch.schedule([(row.id, now_ms + to_ms(delay))])
        logger.info(
            "task.submit_retry",
            extra={"task": row.id, "error": type(exc).__name__, "delay": delay},
        )
