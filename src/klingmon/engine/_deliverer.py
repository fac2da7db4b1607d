"""Hook delivery: the outbox, claimed in order, each event delivered or retried.

Without hooks the outbox is only marked delivered, once a second: forwarded
webhooks and notifications are hooks too, so an engine without any owes nothing.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from klingmon._clock import to_ms
from klingmon.hooks import HookEvent
from klingmon.policy import backoff

if TYPE_CHECKING:
    import random

    from klingmon._clock import Clock
    from klingmon.engine._offload import Offload
    from klingmon.engine._settings import EngineSettings
    from klingmon.hooks import Hooks
    from klingmon.store import OutboxItem, Store

__all__ = ["Deliverer"]

logger = logging.getLogger(__name__)

#: Without hooks, the outbox is only marked delivered: once a second is enough.
_HOOKLESS_DELIVERY = 1.0


class Deliverer:
    """Feeds the outbox to the hooks (at least once each, in claim order)."""

    def __init__(
        self,
        store: Store,
        hooks: Hooks,
        *,
        settings: EngineSettings,
        clock: Clock,
        owner: str,
        rng: random.Random,
        offload: Offload,
    ) -> None:
        self._store = store
        self._hooks = hooks
        self._settings = settings
        self._clock = clock
        self._owner = owner
        self._rng = rng
        self._off = offload
        self._next_hookless = 0.0

    def hurry(self) -> None:
        """Deliver at the next round, hooks or not (only that is left to do)."""
        self._next_hookless = 0.0

    async def round(self, now: float) -> bool:
        """Deliver what the outbox holds; True when it held anything."""
        if not self._hooks:
            if now < self._next_hookless:
                return False
            self._next_hookless = now + _HOOKLESS_DELIVERY
        now_ms = to_ms(now)
        lease_ms = to_ms(self._settings.lease_seconds)
        items = await self._off(
            self._store.outbox.claim_outbox, self._owner, now_ms, lease_ms, 500
        )
        if not items:
            return False
        if not self._hooks:
            await self._off(
                self._store.outbox.delivered, [item.id for item in items], now_ms
            )
            return True
        done = [item.id for item in items if await self._deliver(item, now_ms)]
        await self._off(self._store.outbox.delivered, done, to_ms(self._clock.now()))
        return True

    async def _deliver(self, item: OutboxItem, now_ms: int) -> bool:
        """Whether ``item`` is done with (delivered, or its task is gone)."""
        task = await self._off(self._store.tasks.task, item.event.task_id)
        if task is None:
            return True
        try:
            await self._hooks.deliver(HookEvent(item.event, task))
        except Exception as exc:  # noqa: BLE001 - a user's hook may raise anything
            delay = backoff(item.attempts + 1, base=1.0, cap=300.0, rng=self._rng)
            await self._off(
                self._store.outbox.failed,
                item.id,
                now_ms,
                f"{type(exc).__name__}: {exc}",
                now_ms + to_ms(delay),
            )
            logger.warning(
                "hook.failed",
                extra={"event": item.event.id, "error": type(exc).__name__},
            )
            return False
        return True
