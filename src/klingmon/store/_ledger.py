"""The event log, the outbox, duration statistics, counters, meta and reports.

These are the parts of :class:`Store` that do not move tasks through their lifecycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from klingmon.store import _report
from klingmon.store._base import StoreBase
from klingmon.store._convert import event_row
from klingmon.store._rows import EventRow, OutboxItem
from klingmon.store._schema import counters, duration_stats, events, meta, outbox

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from klingmon.store._rows import Report

__all__ = ["Ledger"]


class Ledger(StoreBase):
    # -- events and outbox ---------------------------------------------------------

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
        with self._read() as conn:
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
        with self._write() as conn:
            claimed = sorted(conn.execute(claim).all(), key=lambda r: (r[3], r[0]))
            if not claimed:
                return []
            found = conn.execute(
                sa.select(events).where(events.c.id.in_([r[1] for r in claimed]))
            ).mappings()
            by_id = {m["id"]: event_row(m) for m in found}
        return [OutboxItem(r[0], by_id[r[1]], r[2]) for r in claimed]

    def delivered(self, ids: Sequence[int], now_ms: int) -> None:
        if not ids:
            return
        with self._write() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id.in_(list(ids)))
                .values(delivered_ms=now_ms, lease_owner=None, lease_until_ms=None)
            )

    def failed(self, outbox_id: int, now_ms: int, error: str, retry_at_ms: int) -> None:
        """One delivery attempt failed; try again at ``retry_at_ms``."""
        del now_ms  # the attempt time is implied by the retry time; kept for symmetry
        with self._write() as conn:
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
        with self._read() as conn:
            return int(conn.scalar(query) or 0)

    # -- statistics, counters, meta ------------------------------------------------

    def load_stats(self) -> dict[str, str]:
        with self._read() as conn:
            query = sa.select(duration_stats.c.key, duration_stats.c.blob)
            return dict(conn.execute(query).all())

    def save_stats(self, blobs: Mapping[str, str]) -> None:
        if not blobs:
            return
        # Sorted, like every multi-row upsert here: workers that write the same rows
        # in the same order never deadlock on them.
        rows = [{"key": k, "blob": v} for k, v in sorted(blobs.items())]
        ins = self._insert(duration_stats)
        stmt = ins.on_conflict_do_update(
            index_elements=[duration_stats.c.key], set_={"blob": ins.excluded.blob}
        )
        with self._write() as conn:
            conn.execute(stmt, rows)

    def bump(self, counts: Mapping[str, int], batch_id: int | None = None) -> None:
        """Add to named counters (``batch_id`` None = the global ones)."""
        rows = [
            {"name": k, "batch_id": batch_id or 0, "value": v}
            for k, v in sorted(counts.items())
            if v
        ]
        if not rows:
            return
        ins = self._insert(counters)
        stmt = ins.on_conflict_do_update(
            index_elements=[counters.c.name, counters.c.batch_id],
            set_={"value": counters.c.value + ins.excluded.value},
        )
        with self._write() as conn:
            conn.execute(stmt, rows)

    def counters(self, batch_id: int | None = None) -> dict[str, int]:
        query = sa.select(counters.c.name, counters.c.value).where(
            counters.c.batch_id == (batch_id or 0)
        )
        with self._read() as conn:
            return {name: int(value) for name, value in conn.execute(query)}

    def meta_get(self, key: str) -> str | None:
        with self._read() as conn:
            value = conn.scalar(sa.select(meta.c.value).where(meta.c.key == key))
            return None if value is None else str(value)

    def meta_set(self, key: str, value: str) -> None:
        ins = self._insert(meta)
        stmt = ins.on_conflict_do_update(
            index_elements=[meta.c.key], set_={"value": ins.excluded.value}
        )
        with self._write() as conn:
            conn.execute(stmt, {"key": key, "value": value})

    # -- reporting -----------------------------------------------------------------

    def report(self, batch_id: int | None = None) -> Report:
        """Figures for one batch, or for everything when ``batch_id`` is None."""
        counts = self.counters(batch_id)
        with self._read() as conn:
            return _report.build(conn, batch_id, counts)
