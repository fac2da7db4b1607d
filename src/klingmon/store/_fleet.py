"""Several workers on one database: heartbeats, named lock leases, wake-ups, leases.

Locks are leases in a table rather than PostgreSQL advisory locks, so that the same
code runs on SQLite and PostgreSQL and a dead holder hands over after its lease ends,
visibly, in a row anyone can read. Wake-ups use LISTEN/NOTIFY on PostgreSQL; on SQLite
(one machine, usually one process) there is nothing to wake and both are no-ops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.store._dialect import CHANNEL
from klingmon.store._flow import Notice
from klingmon.store._schema import downloads, locks, outbox, tasks, workers

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from klingmon.store._base import UnitOfWork

__all__ = ["CHANNEL", "Fleet", "WorkerRow"]


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A worker as its last heartbeat left it."""

    owner: str
    host: str
    pid: int
    started_ms: int
    heartbeat_ms: int
    stopped_ms: int | None
    info: dict[str, Any]
    alive: bool


class Fleet:
    """What lets workers see and coordinate each other: heartbeats, locks, leases."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

    def heartbeat(
        self, owner: str, now_ms: int, info: Mapping[str, Any] | None = None
    ) -> None:
        """Record that ``owner`` is alive (first call registers it)."""
        host, _, rest = owner.partition(":")
        pid = rest.partition(":")[0]
        values = {
            "owner": owner,
            "host": host,
            "pid": int(pid) if pid.isdigit() else 0,
            "started_ms": now_ms,
            "heartbeat_ms": now_ms,
            "stopped_ms": None,
            "info": dict(info or {}),
        }
        stmt = self._unit.dialect.insert(workers).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[workers.c.owner],
            set_={
                "heartbeat_ms": now_ms,
                "stopped_ms": None,
                "info": stmt.excluded.info,
            },
        )
        with self._unit.write() as conn:
            conn.execute(stmt)

    def worker_stopped(self, owner: str, now_ms: int) -> None:
        """A clean exit: the worker is shown as stopped, not as dead."""
        with self._unit.write() as conn:
            conn.execute(
                workers.update()
                .where(workers.c.owner == owner)
                .values(stopped_ms=now_ms, heartbeat_ms=now_ms)
            )

    def workers(self, now_ms: int, *, alive_within_ms: int = 30_000) -> list[WorkerRow]:
        """Every worker seen in the last day, newest heartbeat first."""
        since = now_ms - 86_400_000
        query = (
            sa.select(workers)
            .where(workers.c.heartbeat_ms >= since)
            .order_by(workers.c.heartbeat_ms.desc())
        )
        with self._unit.read() as conn:
            rows = conn.execute(query).mappings().all()
        return [
            WorkerRow(
                owner=r["owner"],
                host=r["host"],
                pid=r["pid"],
                started_ms=r["started_ms"],
                heartbeat_ms=r["heartbeat_ms"],
                stopped_ms=r["stopped_ms"],
                info=dict(r["info"] or {}),
                alive=r["stopped_ms"] is None
                and now_ms - r["heartbeat_ms"] <= alive_within_ms,
            )
            for r in rows
        ]

    def acquire_lock(self, name: str, owner: str, now_ms: int, ttl_ms: int) -> bool:
        """Take or renew the lease ``name``; False while another owner holds it."""
        stmt = self._unit.dialect.insert(locks).values(
            name=name, owner=owner, until_ms=now_ms + ttl_ms
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[locks.c.name],
            set_={"owner": owner, "until_ms": now_ms + ttl_ms},
            where=sa.or_(locks.c.owner == owner, locks.c.until_ms <= now_ms),
        )
        with self._unit.write() as conn:
            conn.execute(stmt)
            holder = conn.execute(
                sa.select(locks.c.owner).where(locks.c.name == name)
            ).scalar_one()
        return bool(holder == owner)

    def notify(self, *notices: Notice, news: bool = True) -> None:
        """Tell every worker: this process's listeners hear each notice (a bare one
        when none is given) once the enclosing transaction committed; with ``news``,
        PostgreSQL NOTIFY wakes those of other processes. SQLite workers elsewhere
        see it at their next periodic look."""
        for notice in notices or (Notice(),):
            self._unit.tell(notice)
        if news:
            self._unit.dialect.notify(self._unit.write)

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from a thread) on each notification; returns a stopper."""
        return self._unit.dialect.listen(self._unit.engine, callback)

    def release(self, owner: str) -> None:
        """Drop every lease and lock ``owner`` holds (a clean shutdown)."""
        with self._unit.write() as conn:
            held = sa.select(tasks.c.id).where(tasks.c.lease_owner == owner)
            # In id order, as every other multi-task writer.
            self._unit.dialect.lock(conn, held.order_by(tasks.c.id).with_for_update())
            for table in (tasks, outbox, downloads):
                conn.execute(
                    table.update()
                    .where(table.c.lease_owner == owner)
                    .values(lease_owner=None, lease_until_ms=None)
                )
            conn.execute(locks.delete().where(locks.c.owner == owner))

    def lease_counts(self, now_ms: int) -> dict[str, int]:
        """Live leases (tasks, outbox, downloads) per owner."""
        found: dict[str, int] = {}
        with self._unit.read() as conn:
            for table in (tasks, outbox, downloads):
                query = (
                    sa.select(table.c.lease_owner, sa.func.count())
                    .where(table.c.lease_until_ms > now_ms)
                    .group_by(table.c.lease_owner)
                )
                for owner, n in conn.execute(query):
                    found[owner] = found.get(owner, 0) + n
        return found

    def lease_owners(self) -> set[str]:
        """Every owner that holds a lease now (live or dead)."""
        with self._unit.read() as conn:
            found: set[str] = set()
            for table in (tasks, outbox, downloads):
                query = sa.select(table.c.lease_owner).where(
                    table.c.lease_owner.is_not(None)
                )
                found.update(conn.execute(query.distinct()).scalars())
            found.update(conn.execute(sa.select(locks.c.owner).distinct()).scalars())
        return found

    def live_lease_owners(self, now_ms: int) -> set[str]:
        """Owners whose leases have not run out: workers that are busy now."""
        found: set[str] = set()
        with self._unit.read() as conn:
            for table in (tasks, outbox, downloads):
                query = sa.select(table.c.lease_owner).where(
                    table.c.lease_owner.is_not(None), table.c.lease_until_ms > now_ms
                )
                found.update(conn.execute(query.distinct()).scalars())
        return found
