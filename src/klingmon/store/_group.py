"""Group commit: concurrent writers share one transaction and one commit.

A commit is the dear part of a short write (the WAL append and lock hand-over on
SQLite, a round trip and a WAL flush on PostgreSQL), and many callers that each
commit alone also queue on the database's one write lock. :class:`GroupCommit`
keeps one writer per event loop: the first item starts it; it hands ``work`` every
item that has arrived, inside one :meth:`Store.transaction` that every store call
joins, commits once, answers those callers, and takes whatever arrived meanwhile.
Nobody hears a result before the commit, so an answer given on it is durable.

When ``work`` raises for a group, the group is rolled back and each item runs again
alone, in a SAVEPOINT of one new transaction: a bad item fails on its own and the
others still commit. ``work`` must therefore derive everything from the store, so
that running it again after a rollback is the same as running it once.

The commit blocks. With no ``offload`` it runs on the event loop, which suits a
local SQLite file: it is CPU work with no network wait to overlap, and a thread would
only trade the GIL back and forth with the loop. With ``offload`` (say, a thread
pool for PostgreSQL) it costs one hop per group rather than one per item.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import sqlalchemy as sa

from klingmon.errors import StoreError
from klingmon.store._base import reason

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from klingmon.store._ports import Transactional

__all__ = ["GroupCommit"]

log = logging.getLogger(__name__)

T = TypeVar("T")  # an item
R = TypeVar("R")  # its result

#: What a group gives back per item: its result, or the exception it failed with.
_Result = tuple[bool, Any]


@dataclass(slots=True)
class _Queue(Generic[T, R]):
    """One event loop's waiting items and its writer task."""

    items: list[tuple[T, asyncio.Future[R]]] = field(default_factory=list)
    writer: asyncio.Task[None] | None = None


class GroupCommit(Generic[T, R]):
    """``await run(item)``; ``work(items)`` returns one result per item, in order.

    ``max_group`` bounds a group. ``await offload(fn, items)``, when given, runs the
    blocking commit off the event loop and returns its value.
    """

    def __init__(
        self,
        store: Transactional,
        work: Callable[[Sequence[T]], Sequence[R]],
        *,
        max_group: int = 256,
        offload: Callable[..., Awaitable[Any]] | None = None,
    ) -> None:
        self._store = store
        self._work = work
        self._max_group = max_group
        self._offload = offload
        self._queues: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, _Queue[T, R]
        ] = weakref.WeakKeyDictionary()
        #: Groups committed and items in them, for tests and benchmarks.
        self.groups = 0
        self.items = 0

    async def run(self, item: T) -> R:
        """``item``'s result, once the transaction that took it in committed."""
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        future: asyncio.Future[R] = loop.create_future()
        queue.items.append((item, future))
        if queue.writer is None:
            queue.writer = loop.create_task(
                self._write(queue), name="klingmon-group-commit"
            )
        return await future

    async def _write(self, queue: _Queue[T, R]) -> None:
        """Commit groups until nothing waits; then the next item starts a writer."""
        try:
            while queue.items:
                # One turn of the loop first: the requests it has read already but
                # not yet run join this group instead of waiting for the next one.
                await asyncio.sleep(0)
                group = queue.items[: self._max_group]
                del queue.items[: len(group)]
                items = [item for item, _ in group]
                try:
                    results: list[_Result] = (
                        self.commit(items)
                        if self._offload is None
                        else await self._offload(self.commit, items)
                    )
                except asyncio.CancelledError:
                    for _, future in group:
                        future.cancel()
                    raise
                except Exception as exc:  # noqa: BLE001 - handed to every caller
                    results = [(False, exc)] * len(group)
                _answer(group, results)
        finally:
            queue.writer = None
            for _, future in queue.items:  # only left when this task was cancelled
                future.cancel()
            queue.items.clear()

    def commit(self, items: Sequence[T]) -> list[_Result]:
        """Run ``work`` on ``items`` in one transaction (blocking); see the module."""
        try:
            with self._store.transaction():
                results = self._results(items)
        except Exception as exc:  # noqa: BLE001 - any failure: each item alone
            if len(items) == 1:
                return [(False, exc)]
            log.warning(
                "store.group_retry",
                extra={"items": len(items), "error": type(exc).__name__},
            )
            return self._one_by_one(items)
        self.groups += 1
        self.items += len(items)
        return [(True, value) for value in results]

    def _one_by_one(self, items: Sequence[T]) -> list[_Result]:
        found: list[_Result] = []
        try:
            with self._store.transaction() as conn:
                for item in items:
                    try:
                        with conn.begin_nested():
                            [value] = self._results([item])
                    except sa.exc.SQLAlchemyError as exc:  # the SAVEPOINT itself
                        error = StoreError(f"store write failed: {reason(exc)}")
                        error.__cause__ = exc
                        found.append((False, error))
                    except Exception as exc:  # noqa: BLE001 - this item fails alone
                        found.append((False, exc))
                    else:
                        found.append((True, value))
        except Exception as exc:  # noqa: BLE001 - the commit itself failed
            return [(False, exc)] * len(items)
        self.groups += 1
        self.items += sum(ok for ok, _ in found)
        return found

    def _results(self, items: Sequence[T]) -> Sequence[R]:
        results = self._work(items)
        if len(results) != len(items):
            raise RuntimeError(f"work gave {len(results)} results for {len(items)}")
        return results


def _answer(
    group: Sequence[tuple[Any, asyncio.Future[Any]]], results: Sequence[_Result]
) -> None:
    for (_, future), (ok, value) in zip(group, results, strict=True):
        if future.done():  # its caller gave up (cancelled)
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)
