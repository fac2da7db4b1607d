"""A batch's price before it is sent: units (and cash) per kind of task and in total,
the expected time at the account's slots, and whether the packs cover it."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from klingmon.policy._prices import PriceKey, PriceSource, price_key

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from klingmon.policy._prices import PriceBook

__all__ = ["Quote", "QuoteLine", "build_quote", "with_remaining"]


@dataclass(frozen=True, slots=True)
class QuoteLine:
    """The tasks of one price key."""

    key: PriceKey
    tasks: int
    #: Items made (an image task with ``n`` makes n); the price is per item.
    items: int
    units_each: float | None
    source: PriceSource
    cash_each: float | None = None
    currency: str | None = None
    #: Expected seconds from submit to the end, per task (learned durations).
    seconds_each: float = 0.0

    @property
    def units(self) -> float | None:
        return None if self.units_each is None else self.units_each * self.items

    @property
    def cash(self) -> float | None:
        return None if self.cash_each is None else self.cash_each * self.items

    def to_json(self) -> dict[str, Any]:
        endpoint, model, mode, duration, audio = self.key
        return {
            "endpoint": endpoint,
            "model": model,
            "mode": mode,
            "duration": duration,
            "audio": bool(audio),
            "tasks": self.tasks,
            "items": self.items,
            "units_each": self.units_each,
            "units": self.units,
            "cash": self.cash,
            "currency": self.currency,
            "price": str(self.source),
            "seconds_each": round(self.seconds_each, 1),
        }


@dataclass(frozen=True, slots=True)
class Quote:
    lines: tuple[QuoteLine, ...]
    #: Units of the lines whose price is known.
    units: float
    #: Tasks whose price nobody knows (not in ``units``).
    unknown_tasks: int
    cash: float | None
    currency: str | None
    #: Expected seconds for the whole batch at ``slots`` tasks at a time.
    seconds: float
    slots: int
    #: Units left in the account's packs (``/account/costs``); None when not asked.
    remaining: float | None = None

    @property
    def tasks(self) -> int:
        return sum(line.tasks for line in self.lines)

    @property
    def covered(self) -> bool | None:
        """Whether the packs' remaining units cover the known units (None: unasked)."""
        return None if self.remaining is None else self.units <= self.remaining

    def to_json(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "units": round(self.units, 4),
            "unknown_tasks": self.unknown_tasks,
            "cash": None if self.cash is None else round(self.cash, 4),
            "currency": self.currency,
            "seconds": round(self.seconds, 1),
            "slots": self.slots,
            "remaining_units": self.remaining,
            "covered": self.covered,
            "lines": [line.to_json() for line in self.lines],
        }


def build_quote(
    requests: Iterable[tuple[str, Mapping[str, Any]]],
    prices: PriceBook,
    *,
    slots: int,
    seconds: Callable[[str, Mapping[str, Any]], float] | None = None,
) -> Quote:
    """Price ``(endpoint, body)`` pairs, grouped by key in first-seen order.

    ``seconds`` tells how long a task like the first of each group takes (from
    the learned durations).
    """
    tasks: Counter[PriceKey] = Counter()
    items: Counter[PriceKey] = Counter()
    first: dict[PriceKey, tuple[str, Mapping[str, Any]]] = {}
    for endpoint, body in requests:
        key, count = price_key(endpoint, body)
        tasks[key] += 1
        items[key] += count
        first.setdefault(key, (endpoint, body))
    lines = []
    for key, n in tasks.items():
        priced = prices.price(key)
        lines.append(
            QuoteLine(
                key,
                n,
                items[key],
                priced.units,
                priced.source,
                priced.cash,
                priced.currency,
                seconds(*first[key]) if seconds is not None else 0.0,
            )
        )
    return _totals(tuple(lines), max(1, slots))


def _totals(lines: tuple[QuoteLine, ...], slots: int) -> Quote:
    units = sum(line.units or 0.0 for line in lines)
    cash_lines = [line for line in lines if line.cash is not None]
    currencies = {line.currency for line in cash_lines}
    cash = sum(line.cash or 0.0 for line in cash_lines) if cash_lines else None
    work = sum(line.tasks * line.seconds_each for line in lines)
    longest = max((line.seconds_each for line in lines), default=0.0)
    return Quote(
        lines=lines,
        units=units,
        unknown_tasks=sum(line.tasks for line in lines if line.units is None),
        cash=cash,
        currency=currencies.pop() if len(currencies) == 1 else None,
        # The work spread over the slots, and never less than the longest task.
        seconds=max(work / slots, longest),
        slots=slots,
    )


def with_remaining(quote: Quote, remaining: float | None) -> Quote:
    """The quote with the packs' remaining units filled in."""
    return Quote(
        quote.lines,
        quote.units,
        quote.unknown_tasks,
        quote.cash,
        quote.currency,
        quote.seconds,
        quote.slots,
        remaining,
    )
