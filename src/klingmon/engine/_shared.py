"""The small objects the engine's duties share, each passed to those that use it.

- :class:`RequestCounts`: API requests per batch and kind, written once a round.
- :class:`CallbackFlow`: whether callbacks flow for an endpoint (polls then fall back
  to a safety net), from this process's notices and the store's ``callback_flow``.
- :class:`Demand`: whether work waits for a slot (the submitter knows; the
  planner prices detection by it).
- :class:`PollPlanner`: when a task is next polled, by the learned durations and
  what a finish found sooner is worth; with callbacks, what a dropped one costs.
- :class:`CallbackDrops`: the learned share of final callbacks that never come.
- :class:`Finishes`: what every applied status change implies for this engine (a
  freed slot for the governor, a sample for the duration book), exactly once each,
  whoever applied it: this engine, a receiver, another worker.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, defaultdict
from typing import TYPE_CHECKING

from klingmon.api import TASKS_PATH, Generation, generation_of
from klingmon.domain import TERMINAL, TaskStatus
from klingmon.errors import RequestValidationError
from klingmon.policy import (
    DEFAULT_ACCOUNT,
    DropRate,
    Phase,
    Transition,
    consequences,
    finish_rate,
    next_poll_delay,
    on_rounds,
    overdue_delay,
    overdue_lag,
    round_lag,
    steady_unseen_rate,
    unseen_finish_rate,
)

if TYPE_CHECKING:
    import random
    from collections.abc import Iterable, Mapping, Sequence

    from klingmon._clock import Clock
    from klingmon.engine._governor import Governor
    from klingmon.engine._settings import EngineSettings
    from klingmon.policy import DurationBook
    from klingmon.store import Change, RecordedChange, Store, TaskRow

__all__ = [
    "CallbackDrops",
    "CallbackFlow",
    "Demand",
    "Finishes",
    "PollPlanner",
    "RequestCounts",
    "phase_of",
    "phase_start",
    "poll_group",
]

logger = logging.getLogger(__name__)


class RequestCounts:
    """API requests by (batch, kind), kept in memory between two flushes."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[int, str]] = Counter()

    def add(self, batch_id: int, kind: str) -> None:
        self._counts[(batch_id, kind)] += 1

    def take(self) -> dict[int, dict[str, int]]:
        """The counts by batch since the last take; empties them."""
        by_batch: dict[int, dict[str, int]] = defaultdict(dict)
        for (batch_id, name), value in self._counts.items():
            by_batch[batch_id][name] = value
        self._counts.clear()
        return dict(by_batch)


class CallbackFlow:
    """Per endpoint: when callbacks were last seen, here or noted in the store."""

    def __init__(self, store: Store, clock: Clock, settings: EngineSettings) -> None:
        self._store = store
        self._clock = clock
        self._settings = settings
        self._seen: dict[str, float] = {}
        self._read: dict[str, float] = {}

    def note(self, endpoint: str) -> None:
        """A callback for ``endpoint`` was taken in by this process."""
        self._seen[endpoint] = self._clock.now()

    def active(self, endpoint: str) -> bool:
        """Whether callbacks flow for ``endpoint`` (within the safety interval).

        A receiver in another process notes its callbacks in the store; that is
        read at most once per ``min_interval`` per endpoint (one small query, on the
        caller's thread: the schedule is pure arithmetic around it).
        """
        schedule = self._settings.schedule
        now = self._clock.now()
        horizon = schedule.safety_interval
        last = self._seen.get(endpoint)
        if last is not None and now - last < horizon:
            return True
        if now - self._read.get(endpoint, -horizon) >= schedule.min_interval:
            self._read[endpoint] = now
            noted_ms = self._store.flow.callbacks_last_ms(endpoint)
            if noted_ms is not None and noted_ms / 1000 > (last or 0.0):
                self._seen[endpoint] = last = noted_ms / 1000
        return last is not None and now - last < horizon


class CallbackDrops:
    """The share of final callbacks that never come, learned from this engine's
    finishes: one a callback told (``came``), one a poll found first (``missed``)."""

    def __init__(self, prior: DropRate | None = None) -> None:
        self._drops = prior or DropRate()

    def came(self) -> None:
        self._drops = self._drops.seen(came=True)

    def missed(self) -> None:
        self._drops = self._drops.seen(came=False)

    @property
    def rate(self) -> float:
        return self._drops.rate

    @property
    def counts(self) -> DropRate:
        """The counts and the prior the rate is from."""
        return self._drops


class Demand:
    """Whether queued work waits for a slot, as the submitter's last round saw it."""

    def __init__(self) -> None:
        self.waiting = True
        self._drained = False

    def see(self, waiting: bool) -> None:
        """The submitter's finding; the end of waiting is kept for :meth:`drained`."""
        if self.waiting and not waiting:
            self._drained = True
        self.waiting = waiting

    def drained(self) -> bool:
        """Whether the queue has emptied since the last call (once per emptying)."""
        drained, self._drained = self._drained, False
        return drained


class PollPlanner:
    """Seconds until a task's next poll: the schedule policy over learned durations,
    with the lag bound of the task's poll group (:func:`~klingmon.policy.round_lag`)."""

    def __init__(
        self,
        settings: EngineSettings,
        book: DurationBook,
        flow: CallbackFlow,
        rng: random.Random,
        demand: Demand,
        *,
        drops: CallbackDrops,
    ) -> None:
        self._settings = settings
        self._book = book
        self._flow = flow
        self._rng = rng
        self._demand = demand
        self._drops = drops
        #: Per poll group: the lag bound its last round set.
        self._lags: dict[str, float] = {}
        #: Per poll group, while callbacks flow: when its next round is planned.
        self._rounds: dict[str, float] = {}

    def tightens_drain(self) -> bool:
        """Whether a batch's last tasks keep to ``done_lag`` once nothing waits: when
        tasks carry no callback URL. With one, their callbacks tell the finishes,
        and polls fall back to the schedule for waiting work only if they stop."""
        return self._settings.callback_url is None

    def _draining(self) -> bool:
        return not self._demand.waiting and self.tightens_drain()

    def price(
        self,
        group: str,
        rows: Sequence[TaskRow],
        now_ms: int,
        *,
        active: int | None = None,
    ) -> float:
        """Set ``group``'s lag bound from the finish rate of ``rows`` (the tasks one
        round answers for) and whether work waits; returns it.

        While callbacks flow, the rate is of unseen finishes (a dropped callback)
        of the group's ``active`` tasks, which one request answers for too (a list
        page, a batch with riders), ``rows`` standing for them (all of them, when
        they are a batch's worth); the budget counts one finish per mean
        duration of each.
        """
        schedule = self._settings.schedule
        if rows and self._flow.active(rows[0].endpoint):
            drop = self._drops.rate
            steady = unseen = 0.0
            for row in rows:
                dist = self._book.get(row.key, Phase.PROCESSING)
                steady += steady_unseen_rate(dist, 1.0)
                # A finish is worth the slots it frees (an image task's ``n``).
                unseen += row.slots * unseen_finish_rate(
                    dist,
                    self._callback_elapsed(row, now_ms),
                    schedule.target_lag,
                    drop,
                )
            scale = max(1.0, (active or 0) / len(rows))
            signed = self._settings.signed_accounts
            lag = overdue_lag(
                schedule,
                unseen * scale,
                waiting=self._demand.waiting,
                finishes=steady * scale,
                signed=all((row.account or DEFAULT_ACCOUNT) in signed for row in rows),
            )
            self._lags[group] = lag
            self._rounds[group] = now_ms / 1000 + lag
            return lag
        rate = 0.0
        for row in rows:
            if row.status is TaskStatus.PROCESSING:
                rate += row.slots * finish_rate(
                    self._book.get(row.key, Phase.PROCESSING),
                    self._elapsed(row, now_ms),
                    schedule.target_lag,
                )
        lag = round_lag(schedule, rate, waiting=not self._draining())
        self._lags[group] = lag
        return lag

    def delay(
        self,
        row: TaskRow,
        now_ms: int,
        *,
        group: str | None = None,
        status: TaskStatus | None = None,
        elapsed: float | None = None,
    ) -> float:
        schedule = self._settings.schedule
        if self._flow.active(row.endpoint):
            return self._overdue(row, now_ms, group, elapsed)
        phase = phase_of(status or row.status)
        if elapsed is None:
            elapsed = self._elapsed(row, now_ms)
        draining = self._draining()
        delay = next_poll_delay(
            schedule,
            self._book.get(row.key, phase),
            elapsed,
            callbacks=self._flow.active(row.endpoint),
            rng=self._rng,
            lag=schedule.done_lag
            if draining
            else self._lags.get(group or poll_group(row.endpoint)),
            # The batch waits on its last tasks, past the p99 too, even one
            # reported stuck (an unusually long task still finishes, mostly).
            tail=not draining,
        )
        if row.watch_timeout:
            delay = max(delay, schedule.max_interval)
        return delay

    def _overdue(
        self,
        row: TaskRow,
        now_ms: int,
        group: str | None,
        elapsed: float | None,
    ) -> float:
        """While callbacks flow: the poll that finds a dropped final callback.

        Only a finish frees a slot, so the task is timed by its processing
        duration, counted from its creation while Kling has not said it began
        (a little early: the wait for a slot is short beside the processing).
        """
        schedule = self._settings.schedule
        if elapsed is None:
            elapsed = self._callback_elapsed(row, now_ms)
        lag = self._lags.get(group or poll_group(row.endpoint))
        if lag is None:
            lag = overdue_lag(schedule, 0.0, waiting=self._demand.waiting)
        delay = overdue_delay(
            schedule,
            self._book.get(row.key, Phase.PROCESSING),
            elapsed,
            drop=self._drops.rate,
            lag=lag,
            tail=self._demand.waiting,
        )
        # The group's rounds: one request answers for every task due at one.
        now = now_ms / 1000
        planned = self._rounds.get(group or poll_group(row.endpoint))
        if planned is not None and planned >= now + schedule.min_interval:
            delay = on_rounds(now + delay, next_round=planned, step=lag) - now
        if row.watch_timeout:
            delay = max(delay, schedule.max_interval)
        return delay

    @staticmethod
    def _callback_elapsed(row: TaskRow, now_ms: int) -> float:
        """Seconds in processing, or since the creation while not known to be."""
        if row.status is TaskStatus.PROCESSING:
            start = phase_start(row)
        else:
            start = row.kling_created_ms or row.submitted_ms or row.phase_ms
        return max(0.0, (now_ms - start) / 1000) if start else 0.0

    @staticmethod
    def _elapsed(row: TaskRow, now_ms: int) -> float:
        start = phase_start(row)
        return max(0.0, (now_ms - start) / 1000) if start else 0.0


class Finishes:
    """Acts on what status changes imply: the governor hears of a freed slot, the
    duration book of a sample, once per change.

    The engine hands in the changes it applied itself (with the rows it held
    before), at once; :meth:`catch_up` then reads every change recorded since the
    last mark and acts on those it has not seen: a callback's, another worker's.
    """

    def __init__(
        self, governor: Governor, book: DurationBook, drops: CallbackDrops
    ) -> None:
        self._governor = governor
        self._book = book
        self._drops = drops
        self._mark: int | None = None
        #: Event ids acted on ahead of the mark (this engine's own changes).
        self._done: set[int] = set()
        #: Per task: when its processing began, as the change into it said.
        self._started: dict[int, int] = {}

    @property
    def mark(self) -> int | None:
        return self._mark

    def start_at(self, mark: int) -> None:
        """Changes up to event ``mark`` are history: never act on them."""
        self._mark = mark
        self._done = {i for i in self._done if i > mark}

    def took(
        self,
        changes: Iterable[tuple[int, Transition, TaskRow]],
    ) -> None:
        """Act on ``(event id, transition, row after)`` for each change."""
        for event_id, transition, task in changes:
            if event_id in self._done or (
                self._mark is not None and event_id <= self._mark
            ):
                continue
            self._done.add(event_id)
            if transition.new is TaskStatus.PROCESSING and transition.at_ms:
                self._started[task.id] = transition.at_ms
            elif transition.new in TERMINAL:
                self._started.pop(task.id, None)
                if transition.source == "callback":
                    self._drops.came()
            implied = consequences(transition)
            if implied.sample is not None:
                self._book.observe(
                    task.key, implied.sample.phase, implied.sample.seconds
                )
            if implied.frees_slot:
                self._governor.on_task_finished(task.pool)

    def applied(self, changes: Iterable[Change], before: Mapping[int, TaskRow]) -> None:
        """This engine's own changes; ``before``: the rows it held (a change of a
        task not among them teaches nothing, but frees its slot all the same)."""
        self.took(
            (
                c.event_id,
                transition(c.new_status, c.task, before.get(c.task.id)),
                c.task,
            )
            for c in changes
        )

    def caught_up(self, recorded: Iterable[RecordedChange]) -> int | None:
        """Act on changes read from the store; the new mark (None: none read)."""
        last = None
        for change in recorded:
            started = self._started.get(change.task.id)
            self.took([(change.event_id, _recorded(change, started), change.task)])
            last = change.event_id
        if last is not None:
            self.start_at(last)
        return last


def transition(new: TaskStatus, task: TaskRow, before: TaskRow | None) -> Transition:
    """The change of ``before`` (the row as the engine held it) into ``task``.

    Without ``before`` no sample is taken: when the phase began is not known.
    """
    at = task.kling_updated_ms or (
        task.processing_ms if new is TaskStatus.PROCESSING else task.finished_ms
    )
    return Transition(
        old=before.status if before is not None else None,
        new=new,
        source="",
        at_ms=at,
        created_ms=task.kling_created_ms,
        phase_started_ms=phase_start(before) if before is not None else None,
    )


def _recorded(change: RecordedChange, started_ms: int | None) -> Transition:
    """A change another writer recorded, dated by Kling's clock or not at all.

    The row now stands for the row then: while it still holds the change's status,
    its ``kling_updated_ms`` dates the change, if Kling's own answer moved it past
    the creation (an unconfirmed callback writes no time: it teaches nothing). The
    processing phase began at ``started_ms``, as the change into it was dated here.
    """
    task = change.task
    new = change.new_status
    dated = (
        task.status is new
        and task.kling_updated_ms is not None
        and task.kling_created_ms is not None
        and task.kling_updated_ms > task.kling_created_ms
    )
    return Transition(
        old=change.old_status,
        new=new,
        source=change.source,
        at_ms=task.kling_updated_ms if dated else None,
        created_ms=task.kling_created_ms,
        phase_started_ms=started_ms,
    )


@functools.lru_cache(maxsize=256)
def poll_group(endpoint: str) -> str:
    """What an endpoint is polled with: itself, or the new generation's ``/tasks``."""
    try:
        new = generation_of(endpoint) is Generation.V2026
    except RequestValidationError:
        new = False
    return TASKS_PATH if new else endpoint


def phase_of(status: TaskStatus) -> Phase:
    return Phase.PROCESSING if status == TaskStatus.PROCESSING else Phase.SUBMITTED


def phase_start(row: TaskRow) -> int | None:
    """When the task's current phase began, by Kling's clock where it told us."""
    if row.status == TaskStatus.PROCESSING:
        return row.kling_updated_ms or row.processing_ms or row.phase_ms
    return row.kling_created_ms or row.submitted_ms or row.phase_ms
