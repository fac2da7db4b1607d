"""Several workers on one database: heartbeats, named lock leases, wake-ups.

Locks are leases in a table rather than PostgreSQL advisory locks, so that the same
code runs on SQLite and PostgreSQL and a dead holder hands over after its lease ends,
visibly, in a row anyone can read. Wake-ups use LISTEN/NOTIFY on PostgreSQL; on SQLite
(one machine, usually one process) there is nothing to wake and both are no-ops.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from klingmon.store._base import StoreBase
from klingmon.store._flow import Notice, tell_here
from klingmon.store._schema import locks, workers

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["CHANNEL", "Fleet", "WorkerRow"]

log = logging.getLogger(__name__)

#: The NOTIFY channel: new work was stored or a callback arrived.
CHANNEL = "klingmon"


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


class Fleet(StoreBase):
    """The part of :class:`Store` that lets workers see and coordinate each other."""

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
        stmt = self._insert(workers).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[workers.c.owner],
            set_={
                "heartbeat_ms": now_ms,
                "stopped_ms": None,
                "info": stmt.excluded.info,
            },
        )
        with self._write() as conn:
            conn.execute(stmt)

    def worker_stopped(self, owner: str, now_ms: int) -> None:
        """A clean exit: the worker is shown as stopped, not as dead."""
        with self._write() as conn:
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
        with self._read() as conn:
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
        stmt = self._insert(locks).values(
            name=name, owner=owner, until_ms=now_ms + ttl_ms
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[locks.c.name],
            set_={"owner": owner, "until_ms": now_ms + ttl_ms},
            where=sa.or_(locks.c.owner == owner, locks.c.until_ms <= now_ms),
        )
        with self._write() as conn:
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
            tell_here(self, notice)
        if not self._pg or not news:
            return
        with self._write() as conn:
            conn.execute(sa.select(sa.func.pg_notify(CHANNEL, "")))

    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` (from a thread) on each notification; returns a stopper."""
        if not self._pg:
            return lambda: None
        import psycopg  # noqa: PLC0415 - only PostgreSQL stores listen

        url = self._engine.url.set(drivername="postgresql")
        conninfo = url.render_as_string(hide_password=False)
        stop = threading.Event()

        def run() -> None:
            try:
                with psycopg.connect(conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=0.5):
                            callback()
            except psycopg.Error as exc:
                log.warning("store.listen_failed", extra={"error": type(exc).__name__})

        thread = threading.Thread(target=run, name="klingmon-listen", daemon=True)
        thread.start()

        def stopper() -> None:
            stop.set()
            thread.join(timeout=5)

        return stopper
