"""``status --pools``: each concurrency pool's size and use.

A pool is what Kling counts parallel tasks in (account x model version x pack
type). Its use comes from the store; its limit from the live workers' heartbeats
(what they learned from 1303s, up to the size), else the configured size.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.table import Table

from klingmon.cli._context import emit_json
from klingmon.policy import PoolLimits, pool_members

if TYPE_CHECKING:
    from klingmon.cli._context import Context
    from klingmon.store import PoolFigure, Store

__all__ = ["pool_records", "show_pools"]


def pool_records(figures: list[PoolFigure], sizes: PoolLimits) -> list[dict[str, Any]]:
    """One record per pool: ``size`` configured, ``limit`` as workers hold it."""
    return [
        {
            "pool": f.pool,
            "size": _size(f.pool, sizes),
            "limit": f.limit if f.limit is not None else _size(f.pool, sizes),
            "slots_used": f.held,
            "tasks_in_flight": f.tasks,
            "queued": f.queued,
        }
        for f in figures
    ]


def _size(pool: str, sizes: PoolLimits) -> int:
    """A pool's size; the queue of a batch on several accounts: theirs summed."""
    return sum(sizes.size(member) for member in pool_members(pool))


def show_pools(context: Context, store: Store, *, as_json: bool) -> None:
    now_ms = int(time.time() * 1000)
    alive = [w.info for w in store.fleet.workers(now_ms) if w.alive]
    settings = context.settings
    engine = settings.engine
    sizes = PoolLimits(
        default=settings.slots,
        sizes=dict(engine.pools),
        accounts=dict(engine.account_slots),
    )
    records = pool_records(store.reports.pool_figures(now_ms, alive), sizes)
    if as_json:
        emit_json(records)
        return
    if not records:
        context.err.print("No task holds a slot or waits for one.")
        return
    table = Table(title="Concurrency pools (account x model x pack)")
    for name in ("pool", "slots used", "tasks", "queued"):
        table.add_column(name, justify="left" if name == "pool" else "right")
    for r in records:
        limit = f"{r['limit']}"
        if r["limit"] < r["size"]:
            limit += f" (learned; size {r['size']})"
        table.add_row(
            r["pool"],
            f"{r['slots_used']}/{limit}",
            str(r["tasks_in_flight"]),
            str(r["queued"]),
        )
    context.console.print(table)
