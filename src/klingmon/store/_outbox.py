"""The event log and the outbox the hooks are fed from, and the webhook ids seen.

Events are written by the status changes themselves (:mod:`klingmon.store._writes`);
this is how they are read, leased for delivery and marked delivered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from klingmon.store._convert import event_row
from klingmon.store._rows import EventRow, OutboxItem
from klingmon.store._schema import events, outbox, webhook_deliveries

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.store._base import UnitOfWork

__all__ = ["Outbox"]


class Outbox:
    """Events, and their delivery to hooks: leased, retried, marked delivered."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

    def events(
        self,
        task_id: int | None = None,
        batch_id: int | None = None,
        since_id: int = 0,
        limit: int | None = None,
    ) -> list[EventRow]:
        query = sa.select(events).where(events.c.id > since_id).order_by(events.c.id)
        if task_id is not None:
            query = query.where(events.c.task_id == task_id)
        if batch_id is not None:
            query = query.where(events.c.batch_id == batch_id)
        if limit is not None:
            query = query.limit(limit)
        with self._unit.read() as conn:
            return [event_row(m) for m in conn.execute(query).mappings()]

    def claim_outbox(
        self, owner: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[OutboxItem]:
        """Lease up to ``limit`` undelivered, due items, oldest due first."""
        if limit <= 0:
            return []
        free = sa.or_(outbox.c.lease_owner.is_(None), outbox.c.lease_until_ms <= now_ms)
        pick = (
            sa.select(outbox.c.id)
            .where(outbox.c.delivered_ms.is_(None), outbox.c.due_ms <= now_ms, free)
            .order_by(outbox.c.due_ms, outbox.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        claim = (
            outbox.update()
            .where(outbox.c.id.in_(pick.scalar_subquery()), free)
            .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms)
            .returning(
                outbox.c.id, outbox.c.event_id, outbox.c.attempts, outbox.c.due_ms
            )
        )
        with self._unit.write() as conn:
            claimed = sorted(conn.execute(claim).all(), key=lambda r: (r[3], r[0]))
        if not claimed:
            return []
        # Events never change once written: read after the commit, so that the
        # write slot is held for the claim alone.
        with self._unit.read() as conn:
            found = (
                conn.execute(
                    sa.select(events).where(events.c.id.in_([r[1] for r in claimed]))
                )
                .mappings()
                .all()
            )
        by_id = {m["id"]: event_row(m) for m in self._unit.paced(found)}
        return [OutboxItem(r[0], by_id[r[1]], r[2]) for r in claimed]

    def delivered(self, ids: Sequence[int], now_ms: int) -> None:
        if not ids:
            return
        with self._unit.write() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(list(ids)))
                .values(delivered_ms=now_ms, lease_owner=None, lease_until_ms=None)
            )

    def failed(self, outbox_id: int, now_ms: int, error: str, retry_at_ms: int) -> None:
        """One delivery attempt failed; try again at ``retry_at_ms``."""
        del now_ms  # the attempt time is implied by the retry time; kept for symmetry
        with self._unit.write() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == outbox_id)
                .values(
                    attempts=outbox.c.attempts + 1,
                    last_error=error[:2000],
                    due_ms=retry_at_ms,
                    lease_owner=None,
                    lease_until_ms=None,
                )
            )

    def outbox_backlog(self) -> int:
        query = sa.select(sa.func.count()).where(outbox.c.delivered_ms.is_(None))
        with self._unit.read() as conn:
            return int(conn.scalar(query) or 0)

    def record_delivery(
        self, webhook_id: str, task_id: int | None, now_ms: int
    ) -> bool:
        """Remember a Standard Webhooks ``webhook-id``; False when seen before."""
        stmt = (
            self._unit.dialect.insert(webhook_deliveries)
            .values(webhook_id=webhook_id[:200], received_ms=now_ms, task_id=task_id)
            .on_conflict_do_nothing(index_elements=[webhook_deliveries.c.webhook_id])
        )
        with self._unit.write() as conn:
            return bool(conn.execute(stmt).rowcount)
