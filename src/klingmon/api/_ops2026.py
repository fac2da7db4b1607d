"""The new generation's queries as operations: batched ``GET /tasks``, ``POST /tasks``.

Unknown ids are simply missing from ``GET /tasks`` answers (live behaviour), never
an error. The most ids one call takes is unconfirmed, so a refused long batch is
halved and the smaller size kept.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from klingmon.api import _protocol as proto
from klingmon.api import _protocol2026 as proto26
from klingmon.api._actions import error_extra
from klingmon.errors import InvalidRequestError, UnexpectedResponseError

if TYPE_CHECKING:
    import builtins
    from collections.abc import Generator, Sequence

    import httpx

    from klingmon._clock import Clock
    from klingmon.api._actions import Action, Outcome, Querier
    from klingmon.api._wire2026 import AccountCosts, Task2026, TaskPage

__all__ = ["TASKS_BATCH_SIZE", "TaskQueries"]

logger = logging.getLogger("klingmon.api._ops")

#: Ids per ``GET /tasks`` until Kling refuses a batch (the limit is unconfirmed).
TASKS_BATCH_SIZE = 100
#: HTTP statuses with which a server may refuse a batch that is too long.
_TOO_LONG = frozenset({400, 413, 414})


class TaskQueries:
    """The new generation's task queries for one client configuration."""

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        clock: Clock,
        querier: Querier,
        batch_size: int = TASKS_BATCH_SIZE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.clock = clock
        self._querier = querier
        #: Ids per ``GET /tasks``; shrinks when Kling refuses a long batch.
        self.batch_size = max(1, batch_size)

    def get_tasks(
        self,
        ids: Sequence[str],
        *,
        external: bool = False,
        batch_size: int | None = None,
        deadline: float | None = None,
    ) -> Generator[Action, Outcome, builtins.list[Task2026]]:
        """``GET /tasks`` in batches; unknown ids are simply missing from the answer.

        When Kling refuses a long batch (400, 413, 414) the batch is halved and
        sent again, and the smaller size is kept for later calls.
        """
        wanted = list(dict.fromkeys(i for i in ids if i))
        size = max(1, min(batch_size or self.batch_size, self.batch_size))
        found: builtins.list[Task2026] = []
        start = 0
        while start < len(wanted):
            chunk = wanted[start : start + size]
            request = proto26.build_get_tasks(
                self.base_url, chunk, external=external, timeout=self.timeout
            )
            try:
                found += yield from self._querier.run(
                    request, self._tasks_answer, deadline=deadline
                )
            except (InvalidRequestError, UnexpectedResponseError) as error:
                if len(chunk) == 1 or error.status_code not in _TOO_LONG:
                    raise
                size = max(1, len(chunk) // 2)
                self.batch_size = size
                logger.info(
                    "kling.tasks_batch_shrunk",
                    extra={"batch_size": size, **error_extra(error)},
                )
                continue
            start += len(chunk)
        return found

    def _tasks_answer(self, response: httpx.Response) -> builtins.list[Task2026]:
        envelope = proto.read_envelope(response, self.clock.now())
        return proto26.tasks2026_from(envelope, response.status_code)

    def one_by_external(
        self, external_task_id: str
    ) -> Generator[Action, Outcome, Task2026]:
        tasks = yield from self.get_tasks([external_task_id], external=True)
        for task in tasks:
            if task.external_id in (None, external_task_id):
                return task
        raise proto.not_found(external_task_id)

    def one(
        self, task_id: str, deadline: float | None
    ) -> Generator[Action, Outcome, Task2026]:
        tasks = yield from self.get_tasks([task_id], deadline=deadline)
        for task in tasks:
            if task.id == task_id:
                return task
        raise proto.not_found(task_id)

    def query_tasks(
        self,
        *,
        statuses: Sequence[str] = (),
        product_types: Sequence[str] = (),
        since_ms: int | None = None,
        until_ms: int | None = None,
        cursor: str | None = None,
        limit: int = 100,
    ) -> Generator[Action, Outcome, TaskPage]:
        """One page of ``POST /tasks``: tasks in a window with these statuses."""
        request = proto26.build_query_tasks(
            self.base_url,
            statuses=statuses,
            product_types=product_types,
            since_ms=since_ms,
            until_ms=until_ms,
            cursor=cursor,
            limit=limit,
            timeout=self.timeout,
        )

        def parse(response: httpx.Response) -> TaskPage:
            envelope = proto.read_envelope(response, self.clock.now())
            return proto26.page_from(envelope, response.status_code)

        return (yield from self._querier.run(request, parse))

    def account_costs(
        self, *, since_ms: int, until_ms: int
    ) -> Generator[Action, Outcome, AccountCosts]:
        """``GET /account/costs``: remaining units per resource pack."""
        request = proto26.build_account_costs(
            self.base_url, since_ms=since_ms, until_ms=until_ms, timeout=self.timeout
        )

        def parse(response: httpx.Response) -> AccountCosts:
            envelope = proto.read_envelope(response, self.clock.now())
            return proto26.costs_from(envelope, response.status_code)

        return (yield from self._querier.run(request, parse))

    def query_all(
        self,
        *,
        statuses: Sequence[str] = (),
        product_types: Sequence[str] = (),
        since_ms: int | None = None,
        until_ms: int | None = None,
        limit: int = 500,
        max_pages: int = 1000,
    ) -> Generator[Action, Outcome, builtins.list[Task2026]]:
        """Every task of the window, paging by cursor until ``has_more`` is false."""
        found: builtins.list[Task2026] = []
        cursor: str | None = None
        for _ in range(max_pages):
            page = yield from self.query_tasks(
                statuses=statuses,
                product_types=product_types,
                since_ms=since_ms,
                until_ms=until_ms,
                cursor=cursor,
                limit=limit,
            )
            found += page.result
            if not page.has_more or not page.next_cursor or page.next_cursor == cursor:
                break
            cursor = page.next_cursor
        return found
