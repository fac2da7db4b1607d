"""Learned prices in the store: sums per price key, added to where charges are
recorded, so a receiver, a poll and another worker all teach the same figures."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.policy import Learned, PriceKey, price_key
from klingmon.store._dialect import dialect_of
from klingmon.store._schema import price_stats

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["PriceSamples", "load_prices", "price_storage_key"]

#: Past this many samples a key's sums are halved, so a price change is learned.
_AGE_AT = 400.0


def price_storage_key(key: PriceKey) -> str:
    return json.dumps(list(key), separators=(",", ":"))


def _parse(text: str) -> PriceKey | None:
    try:
        parts = json.loads(text)
    except ValueError:
        return None
    if not (isinstance(parts, list) and len(parts) == 5):
        return None
    a, b, c, d, e = (str(p) for p in parts)
    return (a, b, c, d, e)


class PriceSamples:
    """The charges one transaction saw, summed per key until it flushes."""

    __slots__ = ("_sums",)

    def __init__(self) -> None:
        self._sums: dict[str, dict[str, Any]] = {}

    def add(self, row: Mapping[str, Any], after: Mapping[str, Any]) -> None:
        """Learn from a success: ``row`` the task, ``after`` its cost columns."""
        body = row.get("body")
        key, items = price_key(
            str(row["endpoint"]), body if isinstance(body, dict) else {}
        )
        units, cash = after.get("units"), after.get("cash")
        if not (units or cash):
            return
        s = self._sums.setdefault(
            price_storage_key(key),
            {
                "count": 0.0,
                "units": 0.0,
                "cash_count": 0.0,
                "cash": 0.0,
                "currency": None,
            },
        )
        if units:
            s["count"] += 1.0
            s["units"] += float(units) / items
        if cash:
            s["cash_count"] += 1.0
            s["cash"] += float(cash) / items
            s["currency"] = after.get("currency") or s["currency"]

    def flush(self, conn: sa.Connection) -> None:
        if not self._sums:
            return
        rows = [{"key": k, **v} for k, v in sorted(self._sums.items())]
        ins = dialect_of(conn).insert(price_stats)
        old, new = price_stats.c, ins.excluded
        total = old.count + new.count + old.cash_count + new.cash_count
        age = sa.case((total > _AGE_AT, 0.5), else_=1.0)
        stmt = ins.on_conflict_do_update(
            index_elements=[price_stats.c.key],
            set_={
                "count": (old.count + new.count) * age,
                "units": (old.units + new.units) * age,
                "cash_count": (old.cash_count + new.cash_count) * age,
                "cash": (old.cash + new.cash) * age,
                "currency": sa.func.coalesce(new.currency, old.currency),
            },
        )
        conn.execute(stmt, rows)
        self._sums.clear()


def load_prices(conn: sa.Connection) -> dict[PriceKey, Learned]:
    """Every learned price, by key."""
    out: dict[PriceKey, Learned] = {}
    for m in conn.execute(sa.select(price_stats)).mappings():
        key = _parse(m["key"])
        if key is not None:
            out[key] = Learned(
                m["count"], m["units"], m["cash_count"], m["cash"], m["currency"]
            )
    return out
