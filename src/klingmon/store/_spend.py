"""Spending: reservations inside the slot claim, batch holds, the spend ledger.

:func:`admit` runs inside :meth:`TaskQueue.claim_submissions`'s transaction, under
the lock that serialises slot counting: what it reserves is committed with the
claim, so no crash and no second worker can send past a cap. A task that would not
fit pauses its batch (``paused_budget``) with a ``budget`` event for the hooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import BatchState, EventKind, TaskStatus
from klingmon.errors import StoreError
from klingmon.policy import (
    DEFAULT_ACCOUNT,
    Budget,
    Learned,
    PriceKey,
    Spend,
    fits,
    parse_pool,
)
from klingmon.store._prices import load_prices
from klingmon.store._schema import batches, tasks
from klingmon.store._writes import record_event

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from klingmon.store._base import UnitOfWork

__all__ = [
    "HELD_BATCHES",
    "SpendCaps",
    "SpendSummary",
    "Spending",
    "account_room",
    "admit",
]

#: Batches none of whose queued tasks may be sent (awaiting approval, paused).
HELD_BATCHES = sa.select(batches.c.id).where(batches.c.state.is_not(None))
#: What counts against a cap: reserved, charged, undetermined (released is 0).
_COUNTED = sa.func.coalesce(sa.func.sum(tasks.c.spend_units), 0.0)


@dataclass(frozen=True, slots=True)
class SpendCaps:
    """The account's caps in units per UTC day and month (None: no cap)."""

    daily: float | None = None
    monthly: float | None = None

    @property
    def any(self) -> bool:
        return self.daily is not None or self.monthly is not None


@dataclass(frozen=True, slots=True)
class SpendSummary:
    """One batch's (or the store's) spend ledger, in units."""

    quoted: float = 0.0
    reserved: float = 0.0
    charged: float = 0.0
    undetermined: float = 0.0
    #: Tasks by spend state (``reserved``, ``charged``, ...).
    tasks: dict[str, int] | None = None
    #: Tasks charged although they failed.
    failed_charged: int = 0

    @property
    def counted(self) -> float:
        """What counts against a cap: reserved + charged + undetermined."""
        return self.reserved + self.charged + self.undetermined


def _starts(now_ms: int) -> tuple[int, int]:
    now = datetime.fromtimestamp(now_ms / 1000, UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    return int(day.timestamp() * 1000), int(month.timestamp() * 1000)


def _account_budgets(
    conn: sa.Connection, caps: SpendCaps, now_ms: int, account: str | None = None
) -> list[tuple[str, float, float]]:
    """The caps of ``caps`` with what counts against each: every task's, or given
    ``account`` that account's only (named ``NAME daily``)."""
    day_ms, month_ms = _starts(now_ms)
    scope = [] if account is None else [tasks.c.account == account]
    prefix = "" if account is None else f"{account} "
    out = []
    for name, cap, since in (
        ("daily", caps.daily, day_ms),
        ("monthly", caps.monthly, month_ms),
    ):
        if cap is not None:
            spent = conn.scalar(
                sa.select(_COUNTED).where(tasks.c.reserved_ms >= since, *scope)
            )
            out.append((prefix + name, cap, float(spent or 0.0)))
    return out


def account_room(
    conn: sa.Connection, account_caps: Mapping[str, SpendCaps] | None, now_ms: int
) -> dict[str, float]:
    """Units each account with caps of its own may still reserve now: the least
    any of its caps leaves (an account not named has no cap of its own)."""
    room: dict[str, float] = {}
    for account, own in (account_caps or {}).items():
        if own.any:
            found = _account_budgets(conn, own, now_ms, account)
            room[account] = min(cap - spent for _, cap, spent in found)
    return room


class _Tally:
    """What counts against each cap while one claim admits its tasks in order."""

    def __init__(
        self,
        conn: sa.Connection,
        batch_ids: set[int],
        caps: SpendCaps,
        now_ms: int,
        account_caps: Mapping[str, SpendCaps] | None = None,
    ) -> None:
        capped = dict(
            conn.execute(
                sa.select(batches.c.id, batches.c.max_units).where(
                    batches.c.id.in_(batch_ids), batches.c.max_units.is_not(None)
                )
            ).all()
        )
        self.caps: dict[int, float] = {int(k): float(v) for k, v in capped.items()}
        self.spent: dict[int, float] = dict.fromkeys(self.caps, 0.0)
        if self.caps:
            for batch_id, spent in conn.execute(
                sa.select(tasks.c.batch_id, _COUNTED)
                .where(tasks.c.batch_id.in_(self.caps))
                .group_by(tasks.c.batch_id)
            ).all():
                self.spent[int(batch_id)] = float(spent)
        found = _account_budgets(conn, caps, now_ms)
        self.account = [(name, cap) for name, cap, _ in found]
        self.account_spent = [spent for _, _, spent in found]
        #: Per named account with caps of its own: [name, cap, spent] of each.
        self.per_account: dict[str, list[list[Any]]] = {
            account: [list(b) for b in _account_budgets(conn, own, now_ms, account)]
            for account, own in (account_caps or {}).items()
            if own.any
        }

    def budgets(self, batch_id: int, account: str) -> list[tuple[str, Budget]]:
        out = [
            (name, Budget(cap, spent))
            for (name, cap), spent in zip(self.account, self.account_spent, strict=True)
        ]
        out += [
            (name, Budget(cap, spent))
            for name, cap, spent in self.per_account.get(account, [])
        ]
        if batch_id in self.caps:
            out.append(("batch", Budget(self.caps[batch_id], self.spent[batch_id])))
        return out

    def take(self, batch_id: int, units: float, account: str) -> None:
        self.account_spent = [spent + units for spent in self.account_spent]
        for budget in self.per_account.get(account, []):
            budget[2] += units
        if batch_id in self.spent:
            self.spent[batch_id] += units


def admit(  # noqa: PLR0917 - the claim's own arguments
    conn: sa.Connection,
    ids: Sequence[int],
    now_ms: int,
    caps: SpendCaps,
    account_caps: Mapping[str, SpendCaps] | None = None,
    placed: Mapping[int, str] | None = None,
) -> list[int]:
    """The queued tasks of ``ids`` (in order) that may be sent; reserves them.

    A task already reserved (its lease lapsed, or Kling answered 1303) holds its
    reservation and goes on. The first that would take a batch, the day or the
    month over its cap (``caps``: over every account; ``account_caps``: over the
    account the task goes on, its own or its pool in ``placed``) pauses its batch,
    and its batch sends nothing more.
    """
    if not ids:
        return []
    rows = conn.execute(
        sa.select(
            tasks.c.id,
            tasks.c.batch_id,
            tasks.c.quoted_units,
            tasks.c.spend,
            tasks.c.account,
            tasks.c.pool,
        )
        .where(tasks.c.id.in_(ids))
        .order_by(tasks.c.id)
    ).all()
    tally = _Tally(conn, {r.batch_id for r in rows}, caps, now_ms, account_caps)
    where = dict(placed or {})
    admitted: list[int] = []
    reserve: list[int] = []
    paused: dict[int, tuple[int, dict[str, Any]]] = {}
    for r in rows:
        if r.batch_id in paused:
            continue
        if r.spend == Spend.RESERVED.value:
            admitted.append(r.id)
            continue
        account = _account_of(r.account, where.get(r.id))
        named = tally.budgets(r.batch_id, account)
        if not fits(r.quoted_units, [b for _, b in named]):
            paused[r.batch_id] = (r.id, _why(r.quoted_units, named))
            continue
        tally.take(r.batch_id, r.quoted_units or 0.0, account)
        admitted.append(r.id)
        reserve.append(r.id)
    if reserve:
        conn.execute(
            tasks.update()
            .where(tasks.c.id.in_(reserve))
            .values(
                spend=Spend.RESERVED.value,
                spend_units=tasks.c.quoted_units,
                reserved_ms=now_ms,
            )
        )
    for batch_id, (task_id, payload) in sorted(paused.items()):
        _pause(conn, batch_id, task_id, now_ms, payload)
    return admitted


def _account_of(stored: str | None, placed: str | None) -> str:
    """The account a task goes on: the pool the claim just placed it in, else its
    own (``default`` for one stored before accounts)."""
    if placed is not None:
        return parse_pool(placed).account
    return stored or DEFAULT_ACCOUNT


def _why(need: float | None, named: list[tuple[str, Budget]]) -> dict[str, Any]:
    over = [
        {"cap": name, "max_units": b.cap, "spent": round(b.spent, 4)}
        for name, b in named
        if need is None or b.spent + need > b.cap + 1e-9
    ]
    names = ", ".join(
        name for name, b in named if need is None or b.spent + need > b.cap
    )
    reason = "price unknown" if need is None else f"over {names}"
    return {"reason": reason, "need": need, "caps": over}


def _pause(
    conn: sa.Connection,
    batch_id: int,
    task_id: int,
    now_ms: int,
    payload: dict[str, Any],
) -> None:
    done = conn.execute(
        batches.update()
        .where(batches.c.id == batch_id, batches.c.state.is_(None))
        .values(state=BatchState.PAUSED_BUDGET.value)
    ).rowcount
    if done:
        row = {"id": task_id, "batch_id": batch_id}
        record_event(
            conn,
            row,
            now_ms,
            "local",
            EventKind.BUDGET.value,
            TaskStatus.QUEUED,
            None,
            payload,
        )


class Spending:
    """Batch holds and caps, the spend ledger's figures, the learned prices."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

    def release(
        self,
        batch_id: int,
        *,
        state: BatchState | None = None,
        max_units: float | None = None,
    ) -> bool:
        """Let a held batch go on (``state``: only if it is held for that reason);
        ``max_units`` sets its cap anew. False when it was not held so."""
        where = [batches.c.id == batch_id]
        where.append(
            batches.c.state.is_not(None)
            if state is None
            else batches.c.state == state.value
        )
        with self._unit.write() as conn:
            found = sa.select(batches.c.id).where(batches.c.id == batch_id)
            if conn.scalar(found) is None:
                raise StoreError(f"no batch {batch_id}")
            if max_units is not None:
                conn.execute(
                    batches.update()
                    .where(batches.c.id == batch_id)
                    .values(max_units=max_units)
                )
            done = conn.execute(
                batches.update().where(*where).values(state=None)
            ).rowcount
        return bool(done)

    def set_cap(self, batch_id: int, max_units: float | None) -> None:
        with self._unit.write() as conn:
            conn.execute(
                batches.update()
                .where(batches.c.id == batch_id)
                .values(max_units=max_units)
            )

    def summary(self, batch_id: int | None = None) -> SpendSummary:
        """The ledger of one batch (or of every batch)."""
        where = [] if batch_id is None else [tasks.c.batch_id == batch_id]
        units = sa.func.coalesce(sa.func.sum(tasks.c.spend_units), 0.0)
        with self._unit.read() as conn:
            by_state = {
                str(state): (int(n), float(u))
                for state, n, u in conn.execute(
                    sa.select(tasks.c.spend, sa.func.count(), units)
                    .where(*where, tasks.c.spend.is_not(None))
                    .group_by(tasks.c.spend)
                ).all()
            }
            quoted = conn.scalar(
                sa.select(
                    sa.func.coalesce(sa.func.sum(tasks.c.quoted_units), 0.0)
                ).where(*where)
            )
            failed_charged = conn.scalar(
                sa.select(sa.func.count()).where(
                    *where,
                    tasks.c.status == TaskStatus.FAILED.value,
                    sa.or_(tasks.c.units > 0, tasks.c.cash > 0),
                )
            )
        return SpendSummary(
            quoted=float(quoted or 0.0),
            reserved=by_state.get("reserved", (0, 0.0))[1],
            charged=by_state.get("charged", (0, 0.0))[1],
            undetermined=by_state.get("undetermined", (0, 0.0))[1],
            tasks={k: n for k, (n, _) in by_state.items()},
            failed_charged=int(failed_charged or 0),
        )

    def by_batch(self) -> dict[int, tuple[float, float, float]]:
        """Per batch: (quoted, counted against caps, charged) units, in one query."""
        c = tasks.c
        charged = sa.case((c.spend == Spend.CHARGED.value, c.spend_units), else_=0.0)
        query = sa.select(
            c.batch_id,
            sa.func.coalesce(sa.func.sum(c.quoted_units), 0.0),
            _COUNTED,
            sa.func.coalesce(sa.func.sum(charged), 0.0),
        ).group_by(c.batch_id)
        with self._unit.read() as conn:
            return {
                int(b): (float(q), float(n), float(ch))
                for b, q, n, ch in conn.execute(query).all()
            }

    def learned_prices(self) -> dict[PriceKey, Learned]:
        with self._unit.read() as conn:
            return load_prices(conn)
