"""The account's packs: ``GET /account/costs`` asked at most once a second, the last
answer kept for ``status``, the dashboard and ``/metrics``, and refreshed a few times
an hour while work runs.

One :class:`Account` serves a process (the runtime hands the same one to the
monitor, the engine and the web app): callers within a second share one answer, and
Kling's QPS of 1 on this route is never passed. Every answer is also written to the
store's ``meta`` (:data:`ACCOUNT_KEY`), so a ``status`` in another process sees the
engine's last figures and their time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import TYPE_CHECKING

from klingmon._clock import Clock, SystemClock, to_ms
from klingmon.domain import ACTIVE
from klingmon.policy import AccountFigures, figures_of

if TYPE_CHECKING:
    from klingmon.api import AccountCosts, AsyncKlingClient
    from klingmon.engine._offload import Offload
    from klingmon.store import Store

__all__ = [
    "ACCOUNT_KEY",
    "ACCOUNT_REFRESH",
    "ACCOUNT_RETRY",
    "Account",
    "AccountRefresh",
    "stored_figures",
]

logger = logging.getLogger(__name__)

#: The ``meta`` key of the last figures (JSON of :class:`AccountFigures`).
ACCOUNT_KEY = "account_costs"
#: Seconds between refreshes while tasks are queued or in flight.
ACCOUNT_REFRESH = 900.0
#: Seconds before a failed refresh is tried again.
ACCOUNT_RETRY = 300.0
#: Seconds between two ``GET /account/costs`` (Kling allows one a second).
_MIN_INTERVAL = 1.0
#: Seconds between looks for work while there is none (a cheap index probe).
_IDLE_LOOK = 60.0


#: What one request gives its waiters.
_Answer = tuple["AccountCosts", AccountFigures]


class Account:
    """The last ``GET /account/costs`` answer of this process, and the rate limit."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        store: Store | None = None,
        min_interval: float = _MIN_INTERVAL,
    ) -> None:
        self.clock: Clock = clock if clock is not None else SystemClock()
        self.store = store
        self.min_interval = min_interval
        self._lock = threading.Lock()
        self._last: tuple[float, AccountCosts, AccountFigures] | None = None
        self._asked_at: float | None = None
        self._flight: (
            tuple[asyncio.AbstractEventLoop, asyncio.Future[_Answer]] | None
        ) = None

    async def costs(self, client: AsyncKlingClient) -> AccountCosts:
        """The packs, asked of Kling unless an answer is under a second old; the
        answer is kept (and saved to the store)."""
        costs, figures, fresh = await self._fetch(client)
        if fresh:
            self.save(figures)
        return costs

    async def refresh(self, client: AsyncKlingClient) -> AccountFigures:
        """Ask (within the rate limit) without saving: the caller saves off-loop."""
        _, figures, _ = await self._fetch(client)
        return figures

    async def _fetch(
        self, client: AsyncKlingClient
    ) -> tuple[AccountCosts, AccountFigures, bool]:
        """(costs, figures, whether this call asked Kling). A caller on the loop of
        a request in flight shares its answer; others wait out the second."""
        loop = asyncio.get_running_loop()
        while True:
            with self._lock:
                now = self.clock.now()
                last = self._last
                if last is not None and now - last[0] < self.min_interval:
                    return last[1], last[2], False
                flight = self._flight
                shared = flight[1] if flight is not None and flight[0] is loop else None
                asked = self._asked_at
                wait = 0.0 if asked is None else asked + self.min_interval - now
                if shared is None and wait <= 0:
                    self._asked_at = now
                    mine: asyncio.Future[_Answer] = loop.create_future()
                    self._flight = (loop, mine)
                    break
            if shared is not None:
                costs, figures = await asyncio.shield(shared)
                return costs, figures, False
            await self.clock.asleep(wait)
        try:
            costs = await client.account_costs()
        except BaseException as exc:
            self._land(mine, exc)
            raise
        now = self.clock.now()
        figures = figures_of(costs, to_ms(now))
        with self._lock:
            self._last = (now, costs, figures)
        self._land(mine, (costs, figures))
        return costs, figures, True

    def _land(
        self, mine: asyncio.Future[_Answer], outcome: _Answer | BaseException
    ) -> None:
        """The request in flight ended: its waiters get ``outcome``."""
        with self._lock:
            if self._flight is not None and self._flight[1] is mine:
                self._flight = None
        if isinstance(outcome, asyncio.CancelledError):
            mine.cancel()
        elif isinstance(outcome, BaseException):
            mine.set_exception(outcome)
            mine.exception()  # retrieved here: no "never retrieved" warning
        else:
            mine.set_result(outcome)

    def save(self, figures: AccountFigures) -> None:
        """Keep ``figures`` in the store for other processes (when there is one)."""
        if self.store is not None:
            self.store.meta.set(ACCOUNT_KEY, figures.dumps())

    def latest(self) -> AccountFigures | None:
        """This process's last figures, else the last the store holds, else None."""
        with self._lock:
            last = self._last
        if last is not None:
            return last[2]
        return stored_figures(self.store) if self.store is not None else None

    def __repr__(self) -> str:
        return f"Account(store={self.store!r})"


def stored_figures(store: Store) -> AccountFigures | None:
    """The last figures any process saved in ``store``."""
    text = store.meta.get(ACCOUNT_KEY)
    return None if text is None else AccountFigures.loads(text)


class AccountRefresh:
    """The engine's duty: refresh the account's figures every ``interval`` seconds
    while Kling holds tasks of ours, in a background task; never when idle.

    A failure is logged once (until a refresh succeeds again) and tried again
    after ``retry`` seconds; it never stops the engine.
    """

    def __init__(
        self,
        store: Store,
        client: AsyncKlingClient,
        account: Account,
        *,
        offload: Offload,
        interval: float = ACCOUNT_REFRESH,
        retry: float = ACCOUNT_RETRY,
    ) -> None:
        self.store = store
        self.client = client
        self.account = account
        self.interval = interval
        self.retry = retry
        self._off = offload
        self._next_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def busy(self) -> bool:
        return self._task is not None and not self._task.done()

    async def round(self, now: float) -> None:
        """Start a refresh when one is due and there is work; never waits for it."""
        if now < self._next_at or self.busy:
            return
        # Work Kling holds: a run whose creates are refused (bad credentials) asks
        # nothing more of the account than its creates did.
        working = await self._off(self.store.tasks.has_tasks, tuple(ACTIVE), None)
        if not working:
            self._next_at = now + min(self.interval, _IDLE_LOOK)
            return
        self._next_at = now + self.interval
        self._task = asyncio.ensure_future(self._refresh())

    async def _refresh(self) -> None:
        try:
            figures = await self.account.refresh(self.client)
            await self._off(self.account.save, figures)
        except Exception as exc:  # noqa: BLE001 - a refresh is never fatal
            self._next_at = min(self._next_at, self.account.clock.now() + self.retry)
            if not self._failing:
                logger.warning(
                    "account.refresh_failed",
                    extra={"error": type(exc).__name__, "retry_s": self.retry},
                )
            self._failing = True
            return
        if self._failing:
            logger.info("account.refresh_recovered")
        self._failing = False

    async def close(self) -> None:
        """Cancel a refresh still in flight (the run is ending)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
