"""Small facts kept beside the data: key/value settings, learnt durations, revisions."""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from klingmon.store import _database
from klingmon.store._schema import duration_stats, meta

if TYPE_CHECKING:
    from collections.abc import Mapping

    from klingmon.store._base import UnitOfWork

__all__ = ["Meta"]


class Meta:
    """The ``meta`` key/value rows, the duration statistics, the schema revision."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

    def get(self, key: str) -> str | None:
        """The value stored under ``key``, or None."""
        with self._unit.read() as conn:
            value = conn.scalar(sa.select(meta.c.value).where(meta.c.key == key))
            return None if value is None else str(value)

    def set(self, key: str, value: str) -> None:
        """Store ``value`` under ``key``, replacing any value it had."""
        ins = self._unit.dialect.insert(meta)
        stmt = ins.on_conflict_do_update(
            index_elements=[meta.c.key], set_={"value": ins.excluded.value}
        )
        with self._unit.write() as conn:
            conn.execute(stmt, {"key": key, "value": value})

    def setdefault(self, key: str, value: str) -> str:
        """Store ``value`` unless ``key`` has one; return the value that holds."""
        stmt = (
            self._unit.dialect.insert(meta)
            .values(key=key, value=value)
            .on_conflict_do_nothing(index_elements=[meta.c.key])
        )
        with self._unit.write() as conn:
            conn.execute(stmt)
            return str(conn.scalar(sa.select(meta.c.value).where(meta.c.key == key)))

    def load_stats(self) -> dict[str, str]:
        with self._unit.read() as conn:
            query = sa.select(duration_stats.c.key, duration_stats.c.blob)
            return dict(conn.execute(query).all())

    def save_stats(self, blobs: Mapping[str, str]) -> None:
        if not blobs:
            return
        # Sorted, like every multi-row upsert here: workers that write the same rows
        # in the same order never deadlock on them.
        rows = [{"key": k, "blob": v} for k, v in sorted(blobs.items())]
        ins = self._unit.dialect.insert(duration_stats)
        stmt = ins.on_conflict_do_update(
            index_elements=[duration_stats.c.key], set_={"blob": ins.excluded.blob}
        )
        with self._unit.write() as conn:
            conn.execute(stmt, rows)

    def revisions(self) -> tuple[str | None, str | None]:
        """(the database's schema revision, the newest this klingmon knows)."""
        return _database.revisions(self._unit.engine)
