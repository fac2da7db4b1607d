"""Quoting a batch before it is stored: the price model over the store's history.

The learned prices and durations are read from the store once per quote; each row
is then priced by pure arithmetic (:mod:`klingmon.policy`), so a 10,000-row file
is quoted in well under a second.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from klingmon.policy import (
    DurationBook,
    Phase,
    PriceBook,
    build_quote,
    price_key,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from klingmon.policy import Quote
    from klingmon.store import NewTask, Store

__all__ = ["Quoter"]


class Quoter:
    """Prices tasks by what this store has learned, over the shipped table."""

    def __init__(
        self,
        store: Store,
        *,
        overrides: Mapping[tuple[str, ...], float] | None = None,
        slots: int = 5,
    ) -> None:
        self._store = store
        self._overrides = dict(overrides or {})
        self._slots = slots

    def book(self) -> PriceBook:
        return PriceBook(self._store.spend.learned_prices(), self._overrides)

    def quote(self, tasks: Sequence[NewTask]) -> Quote:
        """The quote of ``tasks`` at the account's slots."""
        durations = DurationBook.load(self._store.meta.load_stats())

        def seconds(endpoint: str, body: Mapping[str, Any]) -> float:
            key = (
                endpoint,
                str(body.get("model_name") or ""),
                str(body.get("mode") or ""),
                str(body.get("duration") or ""),
            )
            return sum(
                durations.get(key, phase).quantile(0.5)
                for phase in (Phase.SUBMITTED, Phase.PROCESSING)
            )

        return build_quote(
            ((t.endpoint, t.body) for t in tasks),
            self.book(),
            slots=self._slots,
            seconds=seconds,
        )

    def priced(self, tasks: Sequence[NewTask], book: PriceBook) -> list[NewTask]:
        """``tasks`` with the units each is expected to cost (None: unknown)."""
        out = []
        for task in tasks:
            if task.repeat_of is not None:  # never sent: nothing to reserve
                out.append(task)
                continue
            key, items = price_key(task.endpoint, task.body)
            units = book.price(key).units
            quoted = None if units is None else round(units * items, 6)
            out.append(dataclasses.replace(task, quoted_units=quoted))
        return out
