"""The task queue: batches and their tasks, from queued to sent to Kling.

Every step of a submission commits before the next network call depends on it
(claim, the intent with its ``external_task_id``, Kling's answer), so a crash at
any point leaves a task that a restart can finish without paying twice. Claims
that count slots are serialised across workers
(see :meth:`TaskQueue.claim_submissions`).
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.domain import TERMINAL, TaskStatus
from klingmon.errors import NameTakenError, StoreError
from klingmon.policy import AGING_MS, Verdict, judge, parse_pool, pool_members
from klingmon.store import _pools, _priority, _schema
from klingmon.store._cancel import Cancellation, cancel
from klingmon.store._convert import (
    kling_ms,
    observed_values,
    task_row,
    wire,
)
from klingmon.store._lease import claim_tasks
from klingmon.store._pools import PoolUse
from klingmon.store._refs import MATCH, task_ref
from klingmon.store._rows import BatchRow, Change, TaskRef, TaskRow
from klingmon.store._schema import batches, tasks
from klingmon.store._spend import HELD_BATCHES, SpendCaps, account_room, admit
from klingmon.store._writes import (
    QUEUED_STATES,
    Pending,
    batch_row,
    change_status,
    free_name,
    lock_task,
    new_task_values,
    record_event,
    update_task,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence

    from klingmon.domain import Snapshot
    from klingmon.store._base import UnitOfWork
    from klingmon.store._rows import NewTask

__all__ = ["SLOT_LOCK", "TaskQueue"]

#: Any fixed 64-bit number: the lock that serialises slot counting (PostgreSQL).
SLOT_LOCK = 0x6B6C696E676D6F6E  # "klingmon"
# Built once: building a statement costs more than running it on a few rows.
_LOCK_IDS = (
    sa.select(tasks.c.id)
    .where(tasks.c.id.in_(sa.bindparam("ids", expanding=True)))
    .order_by(tasks.c.id)
    .with_for_update()
)


class TaskQueue:
    """Batches and tasks: stored, looked up, claimed, sent, requeued, cancelled."""

    def __init__(self, unit: UnitOfWork, *, notify: Callable[[], None]) -> None:
        self._unit = unit
        #: Wakes workers elsewhere (:meth:`Fleet.notify`): a new batch is work.
        self._notify = notify

    def create_batch(
        self,
        name: str | None,
        tasks: Sequence[NewTask],
        now_ms: int,
        *,
        defaults: Mapping[str, Any] | None = None,
        priority: int = 0,
        state: str | None = None,
        max_units: float | None = None,
        quote: Mapping[str, Any] | None = None,
        accounts: Sequence[str] | None = None,
    ) -> BatchRow:
        """Store a batch and all its tasks in one transaction: all or nothing.

        ``priority``: higher is sent first (see :meth:`claim_submissions`).
        ``state`` ``awaiting_approval`` holds it (nothing is sent before
        :meth:`Spending.release`); ``max_units`` caps what it may spend; ``quote``
        is kept beside it for ``status`` and the report. ``accounts``: the
        accounts its tasks may be sent on (None: the default account); with
        several, the claim places each task on the freest (see
        :meth:`claim_submissions`).

        An adopted task (``NewTask.task`` set: ``track``, ``import``) starts where
        Kling says it is, and that status is recorded like any other: an event for
        the hooks and, when it has already succeeded, its files owed.
        """
        named = sorted(set(accounts)) if accounts else None
        with self._unit.write() as conn:
            if name is None:
                name = free_name(conn, now_ms)
            elif conn.scalar(sa.select(batches.c.id).where(batches.c.name == name)):
                raise NameTakenError(f"a batch named {name!r} already exists")
            batch_id = conn.execute(
                batches.insert().returning(batches.c.id),
                {
                    "name": name,
                    "created_ms": now_ms,
                    "defaults": dict(defaults or {}),
                    "priority": priority,
                    "state": state,
                    "max_units": max_units,
                    "quote": None if quote is None else dict(quote),
                    "accounts": named,
                },
            ).scalar_one()
            rows = [
                new_task_values(batch_id, seq, new, now_ms, named)
                for seq, new in enumerate(tasks, start=1)
            ]
            if rows:
                conn.execute(_schema.tasks.insert(), rows)
            adopted = {seq: new for seq, new in enumerate(tasks, start=1) if new.task}
            if adopted:
                _record_adopted(conn, batch_id, adopted, now_ms)
        self._notify()  # workers on other machines start on it at once
        return BatchRow(
            batch_id,
            name,
            now_ms,
            dict(defaults or {}),
            priority,
            state=state,
            max_units=max_units,
            quote=None if quote is None else dict(quote),
            accounts=None if named is None else tuple(named),
        )

    def batches(self) -> list[BatchRow]:
        with self._unit.read() as conn:
            rows = conn.execute(sa.select(batches).order_by(batches.c.id)).mappings()
            return [batch_row(m) for m in rows]

    def batch(self, ref: str | int) -> BatchRow | None:
        """A batch by id, or by name (a digit string is tried as an id first)."""
        with self._unit.read() as conn:
            m = None
            if isinstance(ref, int) or ref.isdigit():
                m = (
                    conn.execute(sa.select(batches).where(batches.c.id == int(ref)))
                    .mappings()
                    .first()
                )
            if m is None and isinstance(ref, str):
                m = (
                    conn.execute(sa.select(batches).where(batches.c.name == ref))
                    .mappings()
                    .first()
                )
            return None if m is None else batch_row(m)

    def task(self, ref: int | str) -> TaskRow | None:
        """By local id (int), else Kling's ``task_id``, else ``external_task_id``."""
        with self._unit.read() as conn:
            clauses = (
                [tasks.c.id == ref]
                if isinstance(ref, int)
                else [tasks.c.task_id == ref, tasks.c.external_task_id == ref]
            )
            for clause in clauses:
                m = (
                    conn.execute(
                        sa.select(tasks).where(clause).order_by(tasks.c.id).limit(1)
                    )
                    .mappings()
                    .first()
                )
                if m is not None:
                    return task_row(m)
        return None

    def tasks(
        self,
        batch_id: int | None = None,
        statuses: Collection[TaskStatus] | None = None,
    ) -> list[TaskRow]:
        query = sa.select(tasks).order_by(tasks.c.id)
        if batch_id is not None:
            query = query.where(tasks.c.batch_id == batch_id)
        if statuses is not None:
            query = query.where(tasks.c.status.in_([s.value for s in statuses]))
        with self._unit.read() as conn:
            return [task_row(m) for m in conn.execute(query).mappings()]

    def task_ids_of_batch(self, batch_id: int) -> list[int]:
        """Local ids of one batch's tasks, in order (what ``cancel BATCH`` names)."""
        query = (
            sa.select(tasks.c.id)
            .where(tasks.c.batch_id == batch_id)
            .order_by(tasks.c.id)
        )
        with self._unit.read() as conn:
            return list(conn.execute(query).scalars())

    def count_by_status(
        self,
        batch_id: int | None = None,
        statuses: Collection[TaskStatus] | None = None,
    ) -> dict[TaskStatus, int]:
        """Tasks per status; given ``statuses``, only those rows are read."""
        query = sa.select(tasks.c.status, sa.func.count()).group_by(tasks.c.status)
        if batch_id is not None:
            query = query.where(tasks.c.batch_id == batch_id)
        if statuses is not None:
            query = query.where(tasks.c.status.in_([s.value for s in statuses]))
        with self._unit.read() as conn:
            return {TaskStatus(s): n for s, n in conn.execute(query)}

    def succeeded_with(self, hashes: Collection[str]) -> dict[str, int]:
        """Per request hash, a succeeded task with it (the first), if any."""
        wanted = sorted(set(hashes))
        found: dict[str, int] = {}
        with self._unit.read() as conn:
            for start in range(0, len(wanted), 500):
                rows = conn.execute(
                    sa.select(tasks.c.request_hash, sa.func.min(tasks.c.id))
                    .where(
                        tasks.c.request_hash.in_(wanted[start : start + 500]),
                        tasks.c.status == TaskStatus.SUCCEED.value,
                    )
                    .group_by(tasks.c.request_hash)
                )
                found.update({str(h): int(i) for h, i in rows.all()})
        return found

    def has_tasks(
        self,
        statuses: Collection[TaskStatus],
        batch_id: int | None = None,
        *,
        skip_held: bool = False,
    ) -> bool:
        """Whether any task is in one of ``statuses``: one index probe, not a count.

        ``skip_held``: queued tasks of a held batch (awaiting approval, paused) do
        not count; nothing will send them until someone lets the batch go on.
        """
        query = sa.select(tasks.c.id).where(
            tasks.c.status.in_([s.value for s in statuses])
        )
        if skip_held:
            query = query.where(
                sa.or_(
                    tasks.c.status != TaskStatus.QUEUED.value,
                    tasks.c.batch_id.not_in(HELD_BATCHES),
                )
            )
        if batch_id is not None:
            query = query.where(tasks.c.batch_id == batch_id)
        with self._unit.read() as conn:
            return conn.execute(query.limit(1)).first() is not None

    def match_tasks(
        self, refs: Sequence[tuple[str | None, str | None]]
    ) -> list[TaskRef | None]:
        """The task each ``(external_task_id, task_id)`` names, all in one query.

        The task with that ``external_task_id`` when there is one; else, like
        :meth:`task`, the oldest with that Kling ``task_id``, else the task whose
        ``external_task_id`` is that ``task_id``.
        """
        names = {r for ref in refs for r in ref if r}
        if not names:
            return [None] * len(refs)
        kling_ids = {tid for _, tid in refs if tid}
        params = {"names": sorted(names), "kling": sorted(kling_ids)}
        by_external: dict[str, TaskRef] = {}
        by_kling: dict[str, TaskRef] = {}
        with self._unit.read() as conn:
            for ref in map(task_ref, conn.execute(MATCH, params)):
                by_external[ref.external_task_id] = ref
                if ref.task_id is not None:
                    by_kling.setdefault(ref.task_id, ref)  # the oldest wins
        found: list[TaskRef | None] = []
        for external, kling in refs:
            match = by_external.get(external) if external else None
            if match is None and kling:
                match = by_kling.get(kling) or by_external.get(kling)
            found.append(match)
        return found

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
        return claim_tasks(
            self._unit, owner, now_ms, lease_ms, limit, due=due, order=[tasks.c.id]
        )

    def claim_submissions(
        self,
        owner: str,
        now_ms: int,
        lease_ms: int,
        *,
        slots: int,
        pools: Mapping[str, int] | None = None,
        pooled: bool = True,
        batch_id: int | None = None,
        aging_ms: int = AGING_MS,
        caps: SpendCaps | None = None,
        account_caps: Mapping[str, SpendCaps] | None = None,
    ) -> list[TaskRow]:
        """Lease work for the submitter without ever holding more slots in a pool
        than its size, nor exceeding a spending cap.

        A pool is an account x model version x pack type (``tasks.pool``, see
        :func:`klingmon.policy.pool_of`); ``pools`` gives the sizes of some,
        ``slots`` is the size of any other. A task holds ``tasks.slots`` of its pool
        (an image task its ``n``). ``pooled`` False counts as klingmon did before
        pools: every task one slot of ``slots`` for the whole account.

        One transaction, serialised across workers (``BEGIN IMMEDIATE`` on SQLite, an
        advisory transaction lock on PostgreSQL), counts per pool what holds a slot:
        tasks Kling holds, tasks whose create may be under way, and queued tasks
        another worker has leased to send. It then leases the stale ``submitting``
        tasks (they hold their slot already; the caller looks them up before sending
        again) and, in each pool, at most the free slots' worth of queued tasks: the
        highest priority first, FIFO within one, a priority that gets no slot aging
        one step per ``aging_ms`` waited (:func:`klingmon.policy.level_order`); the
        batches whose tasks it leases are noted as served, in the same transaction.
        So five workers sharing a five-slot pool never have more than five of its
        slots in flight between them, and the order holds across them. Given
        ``batch_id``, only that batch's tasks are leased, and only its share of the
        free slots when the batches live workers send are ahead of it; every
        batch's tasks still count against the slots. Queued tasks of a held batch
        (awaiting approval, paused) are not leased; the others are reserved in this
        same transaction (:func:`klingmon.store._spend.admit`), against ``caps``,
        the caps of the account it goes on (``account_caps``) and the batch's own.

        A queued task of a batch sent on several accounts waits in their spread
        pool (``a+b:MODEL/PACK``, :func:`klingmon.policy.spread_pool`); it is leased
        into the member pool with the most free slots (``pools`` names their
        sizes), and its ``account`` and ``pool`` are written here, before its create
        can be sent: a requeue after a 1303 or a crash keeps them, so a task is
        never sent on two accounts.
        """
        lease_free = sa.or_(
            tasks.c.lease_owner.is_(None), tasks.c.lease_until_ms <= now_ms
        )
        not_before = sa.or_(
            tasks.c.next_poll_ms.is_(None), tasks.c.next_poll_ms <= now_ms
        )
        scope = [] if batch_id is None else [tasks.c.batch_id == batch_id]
        ready = [not_before, lease_free, tasks.c.batch_id.not_in(HELD_BATCHES)]
        with self._unit.write() as conn:
            self._unit.dialect.serialise(conn, SLOT_LOCK)
            stale = sa.select(tasks.c.id).where(
                tasks.c.status == TaskStatus.SUBMITTING.value,
                not_before,
                lease_free,
                *scope,
            )
            ids = list(conn.execute(stale.limit(max(1, slots))).scalars())
            pick = functools.partial(
                _priority.pick_queued, conn, now_ms=now_ms, aging_ms=aging_ms
            )
            placed: dict[int, str] = {}
            if pooled:
                budget = account_room(conn, account_caps, now_ms)
                found = _pick_per_pool(
                    conn,
                    pick,
                    ready,
                    now_ms,
                    slots,
                    pools or {},
                    batch_id,
                    _pools.Placing(placed, budget),
                )
            else:
                in_use = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(tasks)
                    .where(_pools.holding(now_ms))
                ).scalar_one()
                room = max(0, slots - in_use)
                found = pick(room=room, ready=ready, scope=batch_id) if room else []
                placed = _first_members(conn, found)
            ids += admit(conn, found, now_ms, caps or SpendCaps(), account_caps, placed)
            if not ids:
                return []
            _place(conn, {i: placed[i] for i in ids if i in placed})
            claim = (
                tasks.update()
                .where(tasks.c.id.in_(ids))
                .values(lease_owner=owner, lease_until_ms=now_ms + lease_ms)
                .returning(*tasks.c)
            )
            rows = [task_row(m) for m in conn.execute(claim).mappings()]
            sent = {r.batch_id for r in rows if r.status is TaskStatus.QUEUED}
            _priority.served(conn, sent, now_ms)
        rows.sort(key=lambda r: r.id)
        return rows

    def pool_use(self, now_ms: int) -> list[PoolUse]:
        """Every pool with slots held or work queued: its use, in label order."""
        with self._unit.read() as conn:
            held = _pools.held(conn, now_ms)
            need = _pools.queued_needs(conn)
        return [
            PoolUse(pool, *held.get(pool, (0, 0)), need=need.get(pool, 0))
            for pool in sorted(held.keys() | need.keys())
        ]

    def set_priority(
        self, batch_id: int, priority: int, now_ms: int, *, by: str = "library"
    ) -> tuple[int, int]:
        """Change a batch's priority, for the claims from now on.

        The old priority and how many queued tasks it moves come back; each of them
        gets a ``priority`` event naming ``by`` (``cli``, ``dashboard``, ...).
        """
        with self._unit.write() as conn:
            if conn.scalar(sa.select(batches.c.id).where(batches.c.id == batch_id)):
                return _priority.set_priority(conn, batch_id, priority, now_ms, by)
        raise StoreError(f"no batch with id {batch_id}")

    def mark_submitting(self, task_id: int, now_ms: int) -> TaskRow:
        """Record the intent to POST (committed before it is sent)."""
        with self._unit.write() as conn:
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
        with self._unit.write() as conn:
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
        with self._unit.write() as conn:
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
        with self._unit.write() as conn:
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

    def cancel_tasks(
        self, ids: Sequence[int], now_ms: int, reason: str = "cancelled by the user"
    ) -> Cancellation:
        """Cancel every task of ``ids`` that was never sent; say what became of each.

        Unknown ids are skipped. All of it is one transaction, holding the lock
        :meth:`claim_submissions` takes, so no claim can slip between the look and
        the write.
        """
        if not ids:
            return Cancellation()
        with self._unit.write() as conn:
            return cancel(
                conn, self._unit.dialect, ids, now_ms, reason, slot_lock=SLOT_LOCK
            )

    def lock_tasks(self, ids: Sequence[int]) -> None:
        """Lock these tasks for the rest of the transaction, in id order.

        A transaction that then writes them in any other order waits on nobody
        holding one while wanting another: every multi-task writer takes its task
        locks in id order (PostgreSQL; SQLite lets one writer in at a time).
        """
        if ids:
            self._unit.dialect.lock_joined(
                self._unit.write, _LOCK_IDS, {"ids": sorted(set(ids))}
            )


def _pick_per_pool(  # noqa: PLR0917 - the claim's own arguments
    conn: sa.Connection,
    pick: Callable[..., list[int]],
    ready: list[sa.ColumnElement[bool]],
    now_ms: int,
    slots: int,
    sizes: Mapping[str, int],
    batch_id: int | None,
    placing: _pools.Placing,
) -> list[int]:
    """Per pool with queued work, the queued tasks its free slots take, in order.

    The pools of one account go first, then the spread pools, each of whose tasks
    goes to the member with most free slots whose account can still pay for it
    (``placing``: where each went, and what each account may still reserve).
    """
    use = {pool: held for pool, (held, _) in _pools.held(conn, now_ms).items()}
    found: list[int] = []
    queued = sorted(_pools.queued_needs(conn, batch_id), key=_spread_last)
    for pool in queued:
        members = pool_members(pool)
        free = {m: sizes.get(m, slots) - use.get(m, 0) for m in members}
        room = sum(max(0, f) for f in free.values())
        empty = any(not use.get(m, 0) for m in members)
        if room <= 0 and not empty:
            continue
        picked = pick(
            room=max(1, room), ready=[*ready, tasks.c.pool == pool], scope=batch_id
        )
        if len(members) == 1:
            taken = _pools.fitting(conn, picked, room, empty=empty)
            use[pool] = use.get(pool, 0) + _pools.slots_taken(conn, taken)
            if placing.room:  # what the account's own tasks take, spread ones see
                placing.spend(pool, _pools.units_to_reserve(conn, taken))
        else:
            taken = _pools.spread(conn, picked, free, use, placing)
        found += taken
    return sorted(found)


def _spread_last(pool: str) -> tuple[bool, str]:
    return len(pool_members(pool)) > 1, pool


def _first_members(conn: sa.Connection, ids: Sequence[int]) -> dict[int, str]:
    """Unpooled counting knows no pools to compare: a spread task goes to its
    first account."""
    if not ids:
        return {}
    rows = conn.execute(
        sa.select(tasks.c.id, tasks.c.pool).where(
            tasks.c.id.in_(list(ids)), tasks.c.account.is_(None)
        )
    ).all()
    return {int(i): pool_members(str(p))[0] for i, p in rows}


def _place(conn: sa.Connection, placed: Mapping[int, str]) -> None:
    """Fix each task's account and pool (only one not placed yet: never moved)."""
    if not placed:
        return
    update = (
        tasks.update()
        .where(tasks.c.id == sa.bindparam("row_id"), tasks.c.account.is_(None))
        .values(pool=sa.bindparam("new_pool"), account=sa.bindparam("new_account"))
    )
    conn.execute(
        update,
        [
            {
                "row_id": task_id,
                "new_pool": pool,
                "new_account": parse_pool(pool).account,
            }
            for task_id, pool in sorted(placed.items())
        ],
    )


def _record_adopted(
    conn: sa.Connection, batch_id: int, adopted: Mapping[int, NewTask], now_ms: int
) -> None:
    """The status each adopted task (by ``seq``) came in with, as a change from
    nothing: its event, and its files when it has succeeded already."""
    pending = Pending()
    found = conn.execute(
        sa.select(tasks).where(
            tasks.c.batch_id == batch_id, tasks.c.seq.in_(list(adopted))
        )
    ).mappings()
    for m in found:
        row = dict(m)
        task = adopted[row["seq"]].task
        assert task is not None  # noqa: S101 - only adopted tasks are in the map
        status = TaskStatus(row["status"])
        pending.change(row, status, now_ms, "local", wire(task), old=None)
    pending.flush(conn)
