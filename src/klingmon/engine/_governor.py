"""One budget for every call to Kling: a paced request rate and submission slots,
a learned limit per concurrency pool (account x model version x pack type).

The arithmetic (AIMD, slot shrinking) is pure and lives in :mod:`klingmon.policy`;
this wrapper only waits on the clock so that requests start no faster than allowed.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from klingmon.errors import ConcurrencyLimitError, RateLimitError
from klingmon.policy import Aimd, PoolLimits

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from klingmon._clock import Clock
    from klingmon.policy import SlotLimit

__all__ = ["Governor"]

logger = logging.getLogger(__name__)


class Governor:
    """Paces requests (AIMD on 1302/429) and sizes submissions per pool (shrinks a
    pool on its 1303)."""

    def __init__(
        self,
        clock: Clock,
        *,
        slots: int,
        rate: float = 10.0,
        max_rate: float = 50.0,
        pools: Mapping[str, int] | None = None,
        accounts: Mapping[str, int] | None = None,
    ) -> None:
        self._clock = clock
        self.aimd = Aimd(rate=rate, ceiling=max_rate)
        self._max_rate = max_rate
        #: Per pool: configured sizes, ``slots`` for any other, learned from 1303.
        #: ``accounts``: an account's own ``slots``, for its pools not configured.
        self.pools = PoolLimits(
            default=slots, sizes=dict(pools or {}), accounts=dict(accounts or {})
        )
        self._next_start = 0.0
        self._lock = asyncio.Lock()
        self.throttled = 0
        self.concurrency_refusals = 0

    @asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        """Wait for the next request start allowed by the rate, then run the call."""
        async with self._lock:
            now = self._clock.now()
            wait = self._next_start - now
            if wait > 0:
                await self._clock.asleep(wait)
                now = self._clock.now()
            self._next_start = max(now, self._next_start) + self.aimd.interval()
        try:
            yield
        except RateLimitError:
            self.throttled += 1
            self.aimd.on_throttle()
            logger.info("governor.throttled", extra={"rate": self.aimd.rate})
            raise
        except ConcurrencyLimitError:
            self.concurrency_refusals += 1
            raise
        else:
            self.aimd.on_success()

    def share(self, workers: int) -> None:
        """Split the request budget evenly among ``workers`` live workers."""
        self.aimd.ceiling = max(self.aimd.floor, self._max_rate / workers)
        self.aimd.rate = min(self.aimd.rate, self.aimd.ceiling)

    @property
    def slots(self) -> SlotLimit:
        """The limit a pool not seen yet starts from (the account's ``slots``)."""
        return self.pools.template

    def limit(self, pool: str) -> int:
        """Slots ``pool`` may hold now."""
        return self.pools.limit(pool)

    def on_concurrency_error(self, in_flight: int, pool: str | None = None) -> None:
        """A 1303 for ``pool`` (None: the account as a whole, every pool)."""
        self.pools.on_concurrency_error(pool, in_flight)
        limit = self.slots.limit if pool is None else self.pools.limit(pool)
        logger.info(
            "governor.slots_shrunk",
            extra={"pool": pool, "limit": limit, "in_flight": in_flight},
        )

    def on_task_finished(self, pool: str | None = None) -> None:
        self.pools.on_task_finished(pool)
