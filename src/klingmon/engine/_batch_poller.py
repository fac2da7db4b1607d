"""Monitoring on the new generation: batched ``GET /tasks``, filtered sweeps.

One poller per account: its queries answer for that account's tasks only.

``GET /tasks?task_ids=`` answers up to a batch of tasks in one request and ``POST
/tasks`` pages the whole account, both across every new-generation endpoint; so the
new generation is polled as one group. When one batch can hold every active task,
the due ones are asked together with the soonest of the others (a batch costs one
request however full it is). Otherwise a sweep lists what is still unfinished (a
status filter and a time window from the oldest active task): one page of at most
500 however long the batch has run, where a listing of what finished would grow
with every task done since the oldest began. An active task the complete listing
does not show has most likely finished, and only those are asked by id (with the
due ones, if a page failed). An id Kling does not know is simply missing from an
answer: the task is polled again later (when due), never failed for it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from klingmon.api import TaskQuery, snapshot
from klingmon.domain import TERMINAL
from klingmon.errors import ConfigError, KlingmonError
from klingmon.policy import DEFAULT_ACCOUNT

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.api import AsyncKlingClient
    from klingmon.domain import Snapshot
    from klingmon.engine._governor import Governor
    from klingmon.engine._offload import Offload
    from klingmon.engine._settings import EngineSettings
    from klingmon.engine._shared import RequestCounts
    from klingmon.store import Store, TaskRow

__all__ = ["BatchPoller", "Seen"]

logger = logging.getLogger(__name__)

#: What one round saw: per task, the row it was asked as, the answer and the source.
Seen = dict[int, tuple["TaskRow", "Snapshot", str]]
#: The statuses a sweep asks for (Kling's words): what has not finished yet.
_UNFINISHED = ("submitted", "processing")
#: How far before the oldest creation a sweep's window opens when Kling's own
#: creation time is unknown (our clock dated it instead).
_SLACK_MS = 300_000


class BatchPoller:
    """Polls the due tasks of the new generation: one request per batch of ids."""

    def __init__(
        self,
        store: Store,
        client: AsyncKlingClient,
        *,
        settings: EngineSettings,
        governor: Governor,
        requests: asyncio.Semaphore,
        counts: RequestCounts,
        offload: Offload,
        account: str = DEFAULT_ACCOUNT,
    ) -> None:
        #: The account this poller asks about: its client sees only its tasks.
        self.account = account
        self._store = store
        self._client = client
        self._settings = settings
        self._governor = governor
        self._requests = requests
        self._counts = counts
        self._off = offload
        #: Tasks a by-id answer left out (Kling does not know them, yet or at all):
        #: asked again only when due, not on every sweep that does not list them.
        self._missing: set[int] = set()
        #: How many active tasks the last poll answered for (asked or listed).
        self.answered = 0

    async def poll(
        self, due: Sequence[TaskRow], near_ms: int
    ) -> tuple[Seen, list[TaskRow]]:
        """What Kling answered for ``due``; and the rows seen unchanged though not
        due whose next poll is before ``near_ms`` (they move as if polled)."""
        active = await self._active(due)
        self.answered = len(active)
        self._missing.intersection_update(active)
        size = self._settings.tasks_batch_size
        wanted = {row.id for row in due}
        seen: Seen = {}
        covered: list[TaskRow] = []

        def sort(row: TaskRow, task: Snapshot, source: str) -> None:
            if row.id in wanted or _news(row, task):
                seen[row.id] = (row, task, source)
            elif row.next_poll_ms is None or row.next_poll_ms < near_ms:
                covered.append(row)

        if len(active) <= size or len(active) < self._settings.sweep_min:
            ask = _with_riders(due, active, size)
        else:
            listed, complete = await self._sweep(active, due[0].batch_id)
            for row, task in listed.values():
                sort(row, task, "sweep")
            ask = (
                [row for row in active.values() if row.id not in listed]
                if complete
                else [row for row in due if row.id not in seen]
            )
        asked = [row for row in ask if row.id in wanted or not self._unknown(row)]
        found = await self._fetch(asked)
        answered = {row.id for row, _ in found}
        self._missing.update(row.id for row in asked if row.id not in answered)
        self._missing.difference_update(answered)
        for row, task in found:
            sort(row, task, "poll")
        return seen, covered

    def _unknown(self, row: TaskRow) -> bool:
        """Whether a by-id answer left ``row`` out before: it is asked when due."""
        return row.id in self._missing

    async def _active(self, due: Sequence[TaskRow]) -> dict[int, TaskRow]:
        """Every active task of the due rows' endpoints, the claimed rows first."""
        active: dict[int, TaskRow] = {}
        for endpoint in sorted({row.endpoint for row in due}):
            found = await self._off(self._store.watch.active, endpoint)
            active.update(
                (row.id, row)
                for row in found
                if row.task_id and (row.account or DEFAULT_ACCOUNT) == self.account
            )
        active.update((row.id, row) for row in due)
        return active

    async def _sweep(
        self, active: dict[int, TaskRow], batch_id: int
    ) -> tuple[dict[int, tuple[TaskRow, Snapshot]], bool]:
        """The active tasks Kling lists unfinished; and whether every page came."""
        by_id = {row.task_id: row for row in active.values() if row.task_id}
        by_ext = {row.external_task_id: row for row in active.values()}
        since = min(_created_ms(row) for row in active.values())
        listed: dict[int, tuple[TaskRow, Snapshot]] = {}
        cursor: str | None = None
        for _ in range(self._settings.max_pages):
            query = TaskQuery(
                statuses=_UNFINISHED,
                since_ms=since,
                cursor=cursor,
                limit=self._settings.page_size,
            )
            try:
                async with self._requests, self._governor.request():
                    self._counts.add(batch_id, "list")
                    page = await self._client.query_tasks(query)
            except ConfigError:
                raise
            except KlingmonError as exc:
                logger.warning("sweep.failed", extra={"error": exc.message})
                return listed, False
            for task in page.result:
                row = by_id.get(task.id) or by_ext.get(task.external_id or "")
                if row is not None and row.status not in TERMINAL:
                    listed[row.id] = (row, snapshot(task))
            if not page.has_more or not page.next_cursor:
                return listed, True
            cursor = page.next_cursor
        return listed, False

    async def _fetch(self, rows: Sequence[TaskRow]) -> list[tuple[TaskRow, Snapshot]]:
        """``rows`` as Kling holds them, one request per batch; unknown ids missing."""
        size = self._settings.tasks_batch_size
        by_id = [row for row in rows if row.task_id]
        by_ext = [row for row in rows if not row.task_id]
        chunks = [
            *((by_id[i : i + size], False) for i in range(0, len(by_id), size)),
            *((by_ext[i : i + size], True) for i in range(0, len(by_ext), size)),
        ]
        answers = await asyncio.gather(
            *(self._batch(chunk, external) for chunk, external in chunks)
        )
        found: list[tuple[TaskRow, Snapshot]] = []
        for (chunk, external), answer in zip(chunks, answers, strict=True):
            for row in chunk:
                key = row.external_task_id if external else row.task_id
                task = answer.get(key or "")
                if task is not None:
                    found.append((row, task))
        return found

    async def _batch(
        self, rows: Sequence[TaskRow], external: bool
    ) -> dict[str, Snapshot]:
        """One ``GET /tasks`` (counted as one "get"); empty when it failed."""
        endpoint = rows[0].endpoint
        try:
            async with self._requests, self._governor.request():
                self._counts.add(rows[0].batch_id, "get")
                if external:
                    return await self._client.fetch_external(
                        endpoint,
                        [row.external_task_id for row in rows],
                        batch_size=len(rows),
                    )
                return await self._client.fetch(
                    endpoint,
                    [row.task_id or "" for row in rows],
                    batch_size=len(rows),
                )
        except ConfigError:
            raise
        except KlingmonError as exc:
            logger.warning(
                "poll.batch_failed",
                extra={"tasks": len(rows), "error": type(exc).__name__},
            )
            return {}


def _with_riders(
    due: Sequence[TaskRow], active: dict[int, TaskRow], size: int
) -> list[TaskRow]:
    """The due rows, and the soonest-due others filling the last batch's room."""
    wanted = {row.id for row in due}
    room = -len(due) % size
    others = sorted(
        (row for row in active.values() if row.id not in wanted),
        key=lambda row: (row.next_poll_ms is None, row.next_poll_ms or 0, row.id),
    )
    return [*due, *others[:room]]


def _news(row: TaskRow, task: Snapshot) -> bool:
    """Whether what Kling answered differs from what the store holds."""
    return task.status != row.status or task.updated_ms != row.kling_updated_ms


def _created_ms(row: TaskRow) -> int:
    """When Kling created the task, by its clock where it told us."""
    if row.kling_created_ms is not None:
        return row.kling_created_ms
    return (row.submitted_ms or row.created_ms) - _SLACK_MS
