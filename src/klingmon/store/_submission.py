"""Getting tasks to Kling: claim, write the intent ahead, record the answer.

Every step commits before the next network call depends on it, so a crash at any
point leaves a task that a restart can finish without paying twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import IN_FLIGHT, TERMINAL, TaskStatus
from klingmon.errors import StoreError
from klingmon.policy._lifecycle import Verdict, judge
from klingmon.store._convert import (
    kling_ms,
    observed_values,
    task_row,
    wire,
)
from klingmon.store._ledger import Ledger
from klingmon.store._rows import Change, TaskRow
from klingmon.store._schema import tasks
from klingmon.store._writes import (
    QUEUED_STATES,
    change_status,
    lock_task,
    record_event,
    update_task,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.domain import Snapshot


__all__ = ["Submission"]

# Any fixed 64-bit number: the advisory lock that serialises slot counting.
_SLOT_LOCK = 0x6B6C696E676D6F6E  # "klingmon"


class Submission(Ledger):
    """The submission half of :class:`Store`, and the lease claim both halves use."""

    # -- submission ----------------------------------------------------------------

    def claim_queued(
        self, owner: str, now_ms: int, lease_ms: int, limit: int
    ) -> list[TaskRow]:
        """Lease up to ``limit`` tasks waiting to be sent, oldest first.

        ``submitting`` tasks come back too once their lease expires: the POST may have
        reached Kling, so the caller looks the ``external_task_id`` up before sending
        again.
        """
        due = sa.and_(
            tasks.c.status.in_(QUEUED_STATES),
            sa.or_(tasks.c.next_poll_ms.is_(None), tasks.c.next_poll_ms <= now_ms),
        )
        return self._claim(owner, now_ms, lease_ms, limit, due=due, order=[tasks.c.id])

    def claim_submissions(
        self,
        owner: str,
        now_ms: int,
        lease_ms: int,
        *,
        slots: int,
        batch_id: int | None = None,
    ) -> list[TaskRow]:
        """Lease work for the submitter without ever exceeding ``slots`` in flight.

        One transaction, serialised across workers (``BEGIN IMMEDIATE`` on SQLite, an
        advisory transaction lock on PostgreSQL), counts what holds a slot: tasks Kling
        holds, tasks whose create may be under way, and queued tasks another worker has
        leased to send. It then leases the stale ``submitting`` tasks (they hold their
        slot already; the caller looks them up before sending again) and at most the
        free slots' worth of queued tasks, oldest first. So five workers sharing a
        five-slot account never have more than five tasks in flight between them.
        Given ``batch_id``, only that batch's tasks are leased; every batch's tasks
        still count against the slots.
        """
        lease_free = sa.or_(
            tasks.c.lease_owner.is_(None), tasks.c.lease_until_ms <= now_ms
        )
        not_before = sa.or_(
            tasks.c.next_poll_ms.is_(None), tasks.c.next_poll_ms <= now_ms
        )
        scope = [] if batch_id is None else [tasks.c.batch_id == batch_id]
        holding = sa.or_(
            tasks.c.status.in_(IN_FLIGHT),
            sa.and_(
                tasks.c.status == TaskStatus.QUEUED.value,
                tasks.c.lease_owner.is_not(None),
                tasks.c.lease_until_ms > now_ms,
            ),
        )
        with self._write() as conn:
            if self._pg:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_SLOT_LOCK)))
            held = conn.execute(
                sa.select(sa.func.count()).select_from(tasks).where(holding)
            ).scalar_one()
            stale = sa.select(tasks.c.id).where(
                tasks.c.status == TaskStatus.SUBMITTING.value,
                not_before,
                lease_free,
                *scope,
            )
            ids = list(conn.execute(stale.limit(max(1, slots))).scalars())
            room = max(0, slots - held)
            if room:
                queued = (
                    sa.select(tasks.c.id)
                    .where(
                        tasks.c.status == TaskStatus.QUEUED.value,
                        not_before,
                        lease_free,
                        *scope,
                    )
                    .order_by(tasks.c.id)
                    .limit(room)
                )
                ids += list(conn.execute(queued).scalars())
            if not ids:
                return []
            claim = (
                tasks.update()
                .where(tasks.c.id.in_(ids))
                .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms)
                .returning(*tasks.c)
            )
            rows = [task_row(m) for m in conn.execute(claim).mappings()]
        rows.sort(key=lambda r: r.id)
        return rows

    def mark_submitting(self, task_id: int, now_ms: int) -> TaskRow:
        """Record the intent to POST (committed before it is sent)."""
        with self._write() as conn:
            row = lock_task(conn, task_id)
            status = TaskStatus(row["status"])
            if status not in (TaskStatus.QUEUED, TaskStatus.SUBMITTING):
                raise StoreError(f"task {task_id} is {status}, not queued")
            values: dict[str, Any] = {"submit_attempts": row["submit_attempts"] + 1}
            if status is TaskStatus.SUBMITTING:
                return task_row(update_task(conn, task_id, values))
            after, _ = change_status(
                conn,
                row,
                TaskStatus.SUBMITTING,
                now_ms,
                "local",
                {},
                old=status,
                values=values,
            )
            return task_row(after)

    def mark_submitted(
        self, task_id: int, task: Snapshot, now_ms: int, next_poll_ms: int
    ) -> Change | None:
        """Store what Kling answered of a create (or a lookup of one); the lease is
        released.

        Whatever status the answer holds is recorded with all it obliges, as a poll's
        would be: a task found already ``succeed`` (its create's answer was lost, the
        process restarted, Kling finished meanwhile) owes its files at once.
        """
        with self._write() as conn:
            row = lock_task(conn, task_id)
            old = TaskStatus(row["status"])
            new = task.status
            payload = wire(task)
            values = observed_values(task, now_ms) | {
                "lease_owner": None,
                "lease_until_ms": None,
                "next_poll_ms": next_poll_ms,
            }
            if new is None:
                # Kling took the task but named its state oddly: watch it as submitted.
                record_event(conn, row, now_ms, "submit", "drift", old, None, payload)
                new = TaskStatus.SUBMITTED
            verdict = judge(
                old, row["kling_updated_ms"], new, kling_ms(task.updated_ms, now_ms)
            )
            if verdict != Verdict.APPLY:
                if old in TERMINAL:
                    values.pop("next_poll_ms")
                update_task(conn, task_id, values)
                return None
            after, event_id = change_status(
                conn, row, new, now_ms, "submit", payload, old=old, values=values
            )
            return Change(task_row(after), old, new, event_id)

    def requeue(
        self, task_id: int, now_ms: int, not_before_ms: int, reason: str
    ) -> None:
        """Put a task back in the queue (1303, or an ambiguous create found absent)."""
        with self._write() as conn:
            row = lock_task(conn, task_id)
            old = TaskStatus(row["status"])
            if old not in (TaskStatus.QUEUED, TaskStatus.SUBMITTING):
                raise StoreError(f"task {task_id} is {old}, it cannot be requeued")
            values: dict[str, Any] = {
                "next_poll_ms": not_before_ms,
                "lease_owner": None,
                "lease_until_ms": None,
                "last_error": reason,
            }
            if old is TaskStatus.QUEUED:
                update_task(conn, task_id, values)
                return
            payload = {"reason": reason, "not_before_ms": not_before_ms}
            # status_values leaves next_poll_ms alone for a queued task: it stays.
            change_status(
                conn,
                row,
                TaskStatus.QUEUED,
                now_ms,
                "local",
                payload,
                old=old,
                values=values,
            )

    def reject(
        self, task_id: int, now_ms: int, message: str, code: int | None
    ) -> Change:
        """Kling refused the create: final, nothing billed."""
        with self._write() as conn:
            row = lock_task(conn, task_id)
            old = TaskStatus(row["status"])
            if old in TERMINAL:
                raise StoreError(f"task {task_id} is already {old}")
            new = TaskStatus.REJECTED
            values = {
                "status_msg": message,
                "last_error": message if code is None else f"{code}: {message}",
            }
            payload = {"message": message, "code": code}
            after, event_id = change_status(
                conn,
                row,
                new,
                now_ms,
                "local",
                payload,
                old=old,
                kind="rejected",
                values=values,
            )
            return Change(task_row(after), old, new, event_id)

    def _claim(
        self,
        owner: str,
        now_ms: int,
        lease_ms: int,
        limit: int,
        *,
        due: sa.ColumnElement[bool],
        order: Sequence[sa.ColumnElement[Any]],
    ) -> list[TaskRow]:
        if limit <= 0:
            return []
        free = sa.or_(tasks.c.lease_owner.is_(None), tasks.c.lease_until_ms <= now_ms)
        pick = (
            sa.select(tasks.c.id)
            .where(due, free)
            .order_by(*order)
            .limit(limit)
            .with_for_update(skip_locked=True)  # SQLite renders nothing here
        )
        claim = (
            tasks.update()
            .where(tasks.c.id.in_(pick.scalar_subquery()), free)
            .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms)
            .returning(*tasks.c)
        )
        with self._write() as conn:
            rows = [task_row(m) for m in conn.execute(claim).mappings()]
        if len(order) > 1:
            rows.sort(key=lambda r: (r.next_poll_ms or 0, r.id))
        else:
            rows.sort(key=lambda r: r.id)
        return rows
