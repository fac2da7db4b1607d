"""Monitoring: list sweeps and polls placed by the learned schedule.

One worker at a time polls an endpoint (a lock lease), so that its list pages, which
answer up to 500 tasks each, carry the monitoring (each account's with its own
client: a key lists only its account's tasks); tasks a sweep did not find get a
single GET. The new generation's queries answer for the whole account, so its
endpoints are polled as one group, under one lock, by :class:`BatchPoller`.
Every observation goes through the store's lifecycle rules; what the changes imply
(a freed slot, a sample) goes to :class:`Finishes`.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any

from klingmon._clock import to_ms
from klingmon.api import TASKS_PATH, parse_status, snapshot
from klingmon.domain import TERMINAL
from klingmon.engine._batch_poller import BatchPoller, Seen
from klingmon.engine._shared import poll_group
from klingmon.errors import KlingmonError
from klingmon.policy import DEFAULT_ACCOUNT
from klingmon.store import Observation

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from klingmon._clock import Clock
    from klingmon.api import AsyncKlingClient, Task
    from klingmon.engine._clients import AccountClients
    from klingmon.engine._governor import Governor
    from klingmon.engine._offload import Offload
    from klingmon.engine._settings import EngineSettings
    from klingmon.engine._shared import (
        CallbackDrops,
        Demand,
        Finishes,
        PollPlanner,
        RequestCounts,
    )
    from klingmon.store import Change, Store, TaskRef, TaskRow

__all__ = ["Poller"]

logger = logging.getLogger(__name__)

#: How long an endpoint's poll lock outlives its holder's last round.
_LOCK_MS = 30_000
#: What one round saw: the task, the row it was claimed as, and by which source.


class Poller:
    """Claims the due tasks of each endpoint, asks Kling, records and reschedules."""

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
        offload: Offload,
        drops: CallbackDrops,
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
        self._off = offload
        self._drops = drops
        #: Per poll group: how many active tasks its last round's request answers
        #: for (a list page's, a batch's with riders), for pricing.
        self._active: dict[str, int] = {}
        #: Per endpoint: when its last poll round was (clock s), for ``sweep_gap``.
        self._polled_at: dict[str, float] = {}
        #: Per endpoint: seconds between its last two poll rounds.
        self._poll_gaps: dict[str, float] = {}
        #: Per account: its new-generation poller (its own misses and counts).
        self._batches: dict[str, BatchPoller] = {}

    def _batch_poller(self, account: str) -> BatchPoller:
        found = self._batches.get(account)
        if found is None:
            found = self._batches[account] = BatchPoller(
                self._store,
                self._clients.of(account),
                settings=self._settings,
                governor=self._governor,
                requests=self._requests,
                counts=self._counts,
                offload=self._off,
                account=account,
            )
        return found

    async def round(self, now: float) -> bool:
        """Poll what is due; True when anything was."""
        if self._demand.drained() and self._planner.tightens_drain():
            # The last queued task has gone out: what is left is the batch's last
            # tasks, whose finishes decide its "done". Polls planned further off
            # (a long tail backing off while work waited) come to ``done_lag``.
            lag = self._settings.schedule.done_lag
            await self._off(self._store.watch.pull_in, to_ms(now + lag), to_ms(now))
        due = await self._claim(now)
        if not due:
            return False
        self._note_gaps({poll_group(row.endpoint) for row in due}, now)
        by_account: dict[str, list[TaskRow]] = defaultdict(list)
        for row in due:
            by_account[row.account or DEFAULT_ACCOUNT].append(row)
        seen: Seen = {}
        covered: list[TaskRow] = []
        active: Counter[str] = Counter()
        for account, rows in sorted(by_account.items()):
            found, riders = await self._poll_account(account, rows, active)
            seen.update(found)
            covered += riders
        self._active.update(active)
        await self._record(seen, covered, due)
        return True

    async def _poll_account(
        self, account: str, due: Sequence[TaskRow], active: Counter[str]
    ) -> tuple[Seen, list[TaskRow]]:
        """What Kling answered for one account's due tasks, with its client: one
        account's key lists and finds only that account's tasks."""
        by_endpoint: dict[str, list[TaskRow]] = defaultdict(list)
        for row in due:
            by_endpoint[poll_group(row.endpoint)].append(row)
        grouped = by_endpoint.pop(TASKS_PATH, [])
        client = self._clients.of(account)
        seen, covered = await self._sweeps(by_endpoint, account, client, active)
        if grouped:
            batches = self._batch_poller(account)
            found, riders = await batches.poll(grouped, self._near(TASKS_PATH))
            active[TASKS_PATH] += batches.answered
            seen.update(found)
            covered += riders
        missing = [row for row in due if row.id not in seen and not _is_new(row)]
        singles = await asyncio.gather(*(self._get_one(row, client) for row in missing))
        for row, single in zip(missing, singles, strict=True):
            if single is not None:
                seen[row.id] = (row, snapshot(single), "poll")
        return seen, covered

    def held_until(self) -> float:
        """When the soonest endpoint held back by ``sweep_gap`` may be polled again."""
        now = self._clock.now()
        gap = self._settings.schedule.endpoint_gap
        held = [at + gap for at in self._polled_at.values() if at + gap > now]
        return min(held, default=-math.inf)

    async def _claim(self, now: float) -> list[TaskRow]:
        now_ms = to_ms(now)
        due: list[TaskRow] = []
        gap = self._settings.schedule.endpoint_gap
        lease_ms = to_ms(self._settings.lease_seconds)
        for endpoint in await self._off(self._store.watch.due_endpoints, now_ms):
            if now < self._polled_at.get(poll_group(endpoint), -math.inf) + gap:
                continue  # what fell due since waits a moment to share one sweep
            # One worker at a time polls an endpoint: its list pages answer for all
            # tasks, whoever submitted them. A dead poller's lock lease runs out.
            # (The new generation's queries answer for every endpoint of it.)
            lock = f"poll:{poll_group(endpoint)}"
            if await self._off(
                self._store.fleet.acquire_lock, lock, self._owner, now_ms, _LOCK_MS
            ):
                due += await self._off(
                    self._store.watch.claim_due,
                    self._owner,
                    now_ms,
                    lease_ms,
                    self._settings.claim_limit,
                    endpoint=endpoint,
                )
        return due

    def _note_gaps(self, groups: set[str], now: float) -> None:
        for endpoint in sorted(groups):
            last = self._polled_at.get(endpoint)
            if last is not None:
                self._poll_gaps[endpoint] = now - last
            self._polled_at[endpoint] = now

    async def _sweeps(
        self,
        by_endpoint: Mapping[str, list[TaskRow]],
        account: str,
        client: AsyncKlingClient,
        active: Counter[str],
    ) -> tuple[Seen, list[TaskRow]]:
        """What list pages showed; and the rows they showed unchanged though not
        due (no write, but their next poll moves as if they had been polled)."""
        seen: Seen = {}
        covered: list[TaskRow] = []
        for endpoint, rows in by_endpoint.items():
            # One page answers every active task: even a single confirmation is
            # cheaper as a sweep, which also catches callbacks that never came.
            refs = [
                r
                for r in await self._off(self._store.watch.watched, endpoint)
                if r.account == account
            ]
            active[endpoint] += len(refs)
            if len(refs) < self._settings.sweep_min:
                continue
            found, unchanged = await self._sweep(endpoint, rows, refs, client)
            full = await self._full_rows(rows, [*found, *unchanged])
            for i, task in found.items():
                if i in full:
                    seen[i] = (full[i], snapshot(task), "sweep")
            covered += [full[i] for i in unchanged if i in full]
        return seen, covered

    async def _record(
        self, seen: Seen, covered: list[TaskRow], due: list[TaskRow]
    ) -> None:
        """Apply what was seen, act on the changes, plan every next poll."""
        now_ms = to_ms(self._clock.now())
        before = {row.id: row for row, _, _ in seen.values()}
        observations = [
            Observation(
                task_id=row.id,
                task=task,
                source=source,
                observed_ms=now_ms,
            )
            for row, task, source in seen.values()
        ]
        changes = (
            await self._off(self._store.watch.apply, observations, now_ms)
            if observations
            else []
        )
        self._finishes.applied(changes, before)
        await self._learn_drops(changes)
        after = {c.task.id: c.task for c in changes}
        unseen = [r for r in due if r.id not in before]
        groups: dict[str, list[TaskRow]] = defaultdict(list)
        for row in [*before.values(), *covered, *unseen]:
            current = after.get(row.id, row)
            if current.status not in TERMINAL:
                groups[poll_group(current.endpoint)].append(current)
        plan: list[tuple[int, int]] = []
        for group, rows in groups.items():
            self._planner.price(group, rows, now_ms, active=self._active.get(group))
            for row in rows:
                delay = self._planner.delay(row, now_ms, group=group)
                plan.append((row.id, now_ms + to_ms(delay)))
        await self._off(self._store.watch.schedule, plan)

    async def _learn_drops(self, changes: Sequence[Change]) -> None:
        """A finish this round found: had its final callback come (as a hint this
        round confirmed), or not? Only for tasks sent with a callback URL."""
        if self._settings.callback_url is None:
            return
        for change in changes:
            if change.new_status not in TERMINAL:
                continue
            events = await self._off(self._store.outbox.events, task_id=change.task.id)
            if any(e.kind == "hint" and e.source == "callback" for e in events):
                self._drops.came()
            else:
                self._drops.missed()

    async def _full_rows(
        self, due: Sequence[TaskRow], ids: Sequence[int]
    ) -> dict[int, TaskRow]:
        """The rows of ``ids``: the claimed ones at hand, the rest read in one query
        (a task that finished meanwhile, by a callback, is left out)."""
        full = {row.id: row for row in due}
        rest = [i for i in ids if i not in full]
        if rest:
            found = await self._off(self._store.watch.active, ids=rest)
            full.update((row.id, row) for row in found)
        return full

    async def _sweep(
        self,
        endpoint: str,
        due: Sequence[TaskRow],
        refs: Sequence[TaskRef],
        client: AsyncKlingClient,
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
        size = self._settings.page_size
        for page in range(1, self._settings.max_pages + 1):
            try:
                async with self._requests, self._governor.request():
                    self._counts.add(batch_id, "list")
                    tasks = await client.list(
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
        near = self._near(endpoint)
        unchanged = [
            i
            for i, row in covered.items()
            if i not in found and (row.next_poll_ms is None or row.next_poll_ms < near)
        ]
        return found, unchanged

    def _near(self, group: str) -> int:
        """Before when (epoch ms) an unchanged task's next poll moves as if polled."""
        policy = self._settings.schedule
        few = self._active.get(group, 0) <= self._settings.tasks_batch_size
        if few and self._settings.callback_url is not None:
            # While callbacks flow, polls look for dropped ones: every task an
            # answer showed moves, so that the group's next round is one request,
            # not one per task's own plan (a few tasks: a few writes).
            return to_ms(self._clock.now() + 2 * policy.safety_interval)
        ahead = 2 * self._poll_gaps.get(group, policy.safety_interval)
        return to_ms(self._clock.now() + max(policy.target_lag, ahead))

    async def _get_one(self, row: TaskRow, client: AsyncKlingClient) -> Task | None:
        try:
            async with self._requests, self._governor.request():
                self._counts.add(row.batch_id, "get")
                if row.task_id:
                    return await client.get(row.endpoint, row.task_id)
                return await client.get(
                    row.endpoint, external_task_id=row.external_task_id
                )
        except KlingmonError as exc:
            logger.warning(
                "poll.failed", extra={"task": row.id, "error": type(exc).__name__}
            )
            return None


def _is_new(row: TaskRow) -> bool:
    return poll_group(row.endpoint) == TASKS_PATH


def _news(row: TaskRef | TaskRow, status: str, updated_at: object) -> bool:
    """Whether what Kling answered differs from what the store holds."""
    return parse_status(status) != row.status or updated_at != row.kling_updated_ms
