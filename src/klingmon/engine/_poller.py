"""Monitoring: list sweeps and polls placed by the learned schedule; stuck checks.

One worker at a time polls an endpoint (a lock lease), so that its list pages, which
answer up to 500 tasks each, carry the monitoring; tasks a sweep did not find get a
single GET. Every observation goes through the store's lifecycle rules.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from klingmon._clock import to_ms
from klingmon.api import snapshot
from klingmon.api._models import parse_status
from klingmon.domain import TERMINAL, TaskStatus
from klingmon.engine._state import EngineState
from klingmon.errors import KlingmonError
from klingmon.policy import Phase, is_stuck, next_poll_delay, timed_out
from klingmon.store import Observation

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from klingmon.api import Task
    from klingmon.store import Change, TaskRef, TaskRow

__all__ = ["CALLBACK_META_PREFIX", "Poller"]

logger = logging.getLogger(__name__)

#: ``meta`` key prefix (+ endpoint) where a receiver notes its last callback (epoch s),
#: so that an engine in another process sees callbacks flowing too.
CALLBACK_META_PREFIX = "callbacks.last:"
#: How long an endpoint's poll lock outlives its holder's last round.
_LOCK_MS = 30_000


class Poller(EngineState):
    # -- monitoring ----------------------------------------------------------

    async def _poll_round(self) -> bool:
        now = self.clock.now()
        now_ms = to_ms(now)
        due: list[TaskRow] = []
        gap = self.settings.schedule.endpoint_gap
        for endpoint in self.store.watch.due_endpoints(now_ms):
            if now < self._polled_at.get(endpoint, -math.inf) + gap:
                continue  # what fell due since waits a moment to share one sweep
            # One worker at a time polls an endpoint: its list pages answer for all
            # tasks, whoever submitted them. A dead poller's lock lease runs out.
            lock = f"poll:{endpoint}"
            if self.store.fleet.acquire_lock(lock, self.owner, now_ms, _LOCK_MS):
                due += self.store.watch.claim_due(
                    self.owner,
                    now_ms,
                    self._lease_ms(),
                    self.settings.claim_limit,
                    endpoint=endpoint,
                )
        if not due:
            return False
        by_endpoint: dict[str, list[TaskRow]] = defaultdict(list)
        for row in due:
            by_endpoint[row.endpoint].append(row)
        for endpoint in by_endpoint:
            last = self._polled_at.get(endpoint)
            if last is not None:
                self._poll_gaps[endpoint] = now - last
            self._polled_at[endpoint] = now
        seen: dict[int, tuple[TaskRow, Task, str]] = {}
        # Tasks a sweep showed unchanged though not due: no write, but their next
        # poll moves as if they had been polled.
        covered: list[TaskRow] = []
        for endpoint, rows in by_endpoint.items():
            # One page answers every active task: even a single confirmation is
            # cheaper as a sweep, which also catches callbacks that never came.
            refs = self.store.watch.watched(endpoint)
            if len(refs) >= self.settings.sweep_min:
                found, unchanged = await self._sweep(endpoint, rows, refs)
                full = self._full_rows(rows, [*found, *unchanged])
                for i, task in found.items():
                    if i in full:
                        seen[i] = (full[i], task, "sweep")
                covered += [full[i] for i in unchanged if i in full]
        missing = [row for row in due if row.id not in seen]
        singles = await asyncio.gather(*(self._get_one(row) for row in missing))
        for row, single in zip(missing, singles, strict=True):
            if single is not None:
                seen[row.id] = (row, single, "poll")
        now_ms = to_ms(self.clock.now())
        before = {row.id: row for row, _, _ in seen.values()}
        observations = [
            Observation(
                task_id=row.id,
                task=snapshot(task),
                source=source,
                observed_ms=now_ms,
            )
            for row, task, source in seen.values()
        ]
        changes = self.store.watch.apply(observations, now_ms) if observations else []
        self._learn(changes, before)
        after = {c.task.id: c.task for c in changes}
        plan: list[tuple[int, int]] = []
        unseen = [r for r in due if r.id not in before]
        for row in [*before.values(), *covered, *unseen]:
            current = after.get(row.id, row)
            if current.status in TERMINAL:
                continue
            plan.append((row.id, now_ms + to_ms(self._delay(current, now_ms))))
        self.store.watch.schedule(plan)
        for change in changes:
            if change.new_status in TERMINAL:
                self.governor.on_task_finished()
        return True

    def _held_until(self) -> float:
        """When the soonest endpoint held back by ``sweep_gap`` may be polled again."""
        now = self.clock.now()
        gap = self.settings.schedule.endpoint_gap
        held = [at + gap for at in self._polled_at.values() if at + gap > now]
        return min(held, default=-math.inf)

    def _full_rows(
        self, due: Sequence[TaskRow], ids: Sequence[int]
    ) -> dict[int, TaskRow]:
        """The rows of ``ids``: the claimed ones at hand, the rest read in one query
        (a task that finished meanwhile, by a callback, is left out)."""
        full = {row.id: row for row in due}
        rest = [i for i in ids if i not in full]
        if rest:
            full.update((row.id, row) for row in self.store.watch.active(ids=rest))
        return full

    async def _sweep(
        self, endpoint: str, due: Sequence[TaskRow], refs: Sequence[TaskRef]
    ) -> tuple[dict[int, Task], list[int]]:
        """The due tasks and those that changed, by list pages; and the ids of the
        unchanged ones whose next poll is near.

        Only the chosen items are validated: at hundreds of tasks a page, most say
        again what the store holds. The order of the list is not relied on.
        """
        active: dict[str, TaskRef | TaskRow] = {r.task_id: r for r in refs if r.task_id}
        for row in due:
            if row.task_id:
                active[row.task_id] = row
        wanted = {row.id for row in due}
        covered: dict[int, TaskRef | TaskRow] = {}
        listed = Counter[int]()  # items per page, before the filter

        def news(item: Mapping[str, Any]) -> bool:
            listed[page] += 1
            row = active.get(str(item.get("task_id")))
            if row is None:
                return False
            covered[row.id] = row
            return row.id in wanted or _news(
                row, str(item.get("task_status")), item.get("updated_at")
            )

        found: dict[int, Task] = {}
        batch_id = due[0].batch_id
        size = self.settings.page_size
        for page in range(1, self.settings.max_pages + 1):
            try:
                async with self._requests, self.governor.request():
                    self._counts[(batch_id, "list")] += 1
                    tasks = await self.client.list(
                        endpoint, page=page, page_size=size, only=news
                    )
            except KlingmonError as exc:
                logger.warning(
                    "sweep.failed", extra={"endpoint": endpoint, "error": exc.message}
                )
                break
            for task in tasks:
                match = active.get(task.task_id)
                if match is not None:
                    found[match.id] = task
            if wanted <= found.keys() or len(covered) >= len(active):
                break
            if listed[page] < size:
                break
        # An unchanged task moves only when its poll would likely come before the
        # next sweep (twice the last gap between two): one further off would mostly
        # move back to where it was (the schedule aims at the phase's quantiles, or
        # at the p99 while callbacks flow), at a write per task per sweep. A poll
        # planned for the phase a callback has since ended is near on slow
        # endpoints, where it would otherwise cost a sweep of its own.
        policy = self.settings.schedule
        ahead = 2 * self._poll_gaps.get(endpoint, policy.safety_interval)
        near = to_ms(self.clock.now() + max(policy.target_lag, ahead))
        unchanged = [
            i
            for i, row in covered.items()
            if i not in found and (row.next_poll_ms is None or row.next_poll_ms < near)
        ]
        return found, unchanged

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
            raw = self.store.meta.get(CALLBACK_META_PREFIX + endpoint)
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
        for row in self.store.watch.active():
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
                    self.store.watch.flag(
                        row.id,
                        "stuck",
                        now_ms,
                        {"phase": phase.value, "elapsed": elapsed},
                    )
                    logger.warning("task.stuck", extra={"task": row.id})
                    did = True
            if not row.watch_timeout and timed_out(row.deadline_ms, now_ms):
                self.store.watch.flag(
                    row.id, "watch_timeout", now_ms, {"deadline_ms": row.deadline_ms}
                )
                logger.warning("task.watch_timeout", extra={"task": row.id})
                did = True
        return did


def _news(row: TaskRef | TaskRow, status: str, updated_at: object) -> bool:
    """Whether what Kling answered differs from what the store holds."""
    return parse_status(status) != row.status or updated_at != row.kling_updated_ms


def _phase_start(row: TaskRow) -> int | None:
    """When the task's current phase began, by Kling's clock where it told us."""
    if row.status == TaskStatus.PROCESSING:
        return row.kling_updated_ms or row.processing_ms or row.phase_ms
    return row.kling_created_ms or row.submitted_ms or row.phase_ms
