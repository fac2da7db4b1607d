"""``KlingClient`` and ``AsyncKlingClient``: thin drivers over the shared operations.

All request building, parsing, retrying and waiting lives in :mod:`._ops`, and the
operations each method runs are built once in :mod:`._base`; each client only
carries out the ``Send`` and ``Sleep`` actions, with its own httpx client and its
own way of sleeping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx

from klingmon.api._base import DEFAULT_BASE_URL, TaskQuery, _BaseClient
from klingmon.api._ops import TASKS_BATCH_SIZE, Action, Outcome, Send
from klingmon.api._retry import RetryPolicy

if TYPE_CHECKING:
    import builtins
    import random
    from collections.abc import Callable, Generator, Mapping, Sequence
    from types import TracebackType

    from klingmon._clock import Clock
    from klingmon.api._models import Task
    from klingmon.api._requests import TaskRequest
    from klingmon.api._wire2026 import AccountCosts, Task2026, TaskPage
    from klingmon.domain import Snapshot

__all__ = ["DEFAULT_BASE_URL", "AsyncKlingClient", "KlingClient", "TaskQuery"]

T = TypeVar("T")


class KlingClient(_BaseClient):
    """The Kling API over a blocking ``httpx.Client``."""

    def __init__(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        clock: Clock | None = None,
        rng: random.Random | None = None,
        tasks_batch_size: int = TASKS_BATCH_SIZE,
    ) -> None:
        super().__init__(
            access_key=access_key,
            secret_key=secret_key,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            retry=retry,
            clock=clock,
            rng=rng,
            tasks_batch_size=tasks_batch_size,
        )
        self._http = httpx.Client(
            auth=self._auth,
            transport=transport,
            timeout=timeout,
            event_hooks={"request": [self._count]},
        )

    def _run(self, operation: Generator[Action, Outcome, T]) -> T:
        outcome: Outcome = None
        try:
            while True:
                action = operation.send(outcome)
                if isinstance(action, Send):
                    try:
                        outcome = self._http.send(action.request)
                    except httpx.TransportError as exc:
                        outcome = exc
                else:
                    self._clock.sleep(action.seconds)
                    outcome = None
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    def create(
        self,
        request: TaskRequest,
        *,
        external_task_id: str | None = None,
        callback_url: str | None = None,
    ) -> Task:
        """Create a task; an unknown outcome is resolved by its external id."""
        return self._run(self._create_op(request, external_task_id, callback_url))

    def get(
        self,
        endpoint: str,
        task_id: str | None = None,
        *,
        external_task_id: str | None = None,
    ) -> Task:
        """One task by task id or external id."""
        return self._run(self._get_op(endpoint, task_id, external_task_id))

    def list(
        self,
        endpoint: str,
        *,
        page: int = 1,
        page_size: int = 30,
        only: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> builtins.list[Task]:
        """One page of an endpoint's tasks (page 1..1000, page_size 1..500).

        ``only`` sees each raw task object first; those it refuses are neither
        validated nor returned (a monitor that needs a few of hundreds).
        """
        return self._run(self._list_op(endpoint, page, page_size, only))

    def wait(
        self,
        endpoint: str,
        task: str | Task | None = None,
        *,
        external_task_id: str | None = None,
        timeout: float = 600,
        poll_interval: float = 2.0,
        max_interval: float = 30.0,
    ) -> Task:
        """Poll until the task succeeds (returned) or fails (TaskFailedError)."""
        return self._run(
            self._wait_op(
                endpoint,
                task=task,
                external_task_id=external_task_id,
                timeout=timeout,
                poll_interval=poll_interval,
                max_interval=max_interval,
            )
        )

    # -- either generation, as Snapshots ----------------------------------------

    def submit(
        self,
        request: TaskRequest,
        *,
        external_task_id: str | None = None,
        callback_url: str | None = None,
    ) -> Snapshot:
        """Create a task of either generation; an unknown outcome is looked up."""
        return self._run(self._submit_op(request, external_task_id, callback_url))

    def fetch(
        self,
        endpoint: str,
        task_ids: Sequence[str],
        *,
        batch_size: int | None = None,
    ) -> dict[str, Snapshot]:
        """Snapshots by Kling's ids; an id Kling does not know is simply missing.

        The new generation asks ``GET /tasks?task_ids=`` in batches; the legacy one
        asks each task's path.
        """
        return self._run(
            self._fetch_op(endpoint, task_ids, external=False, batch_size=batch_size)
        )

    def fetch_external(
        self,
        endpoint: str,
        external_task_ids: Sequence[str],
        *,
        batch_size: int | None = None,
    ) -> dict[str, Snapshot]:
        """Snapshots by our external ids (keys); unknown ones are missing."""
        return self._run(
            self._fetch_op(
                endpoint, external_task_ids, external=True, batch_size=batch_size
            )
        )

    def fetch_one(
        self,
        endpoint: str,
        task_id: str | None = None,
        *,
        external_task_id: str | None = None,
    ) -> Snapshot:
        """One task of either generation; TaskNotFoundError when Kling has none."""
        return self._run(self._fetch_one_op(endpoint, task_id, external_task_id))

    def wait_snapshot(
        self,
        endpoint: str,
        task_id: str | None = None,
        *,
        external_task_id: str | None = None,
        timeout: float = 600,
        poll_interval: float = 2.0,
        max_interval: float = 30.0,
    ) -> Snapshot:
        """Poll either generation until the task succeeds (or TaskFailedError)."""
        return self._run(
            self._wait_snapshot_op(
                endpoint,
                task_id,
                external_task_id,
                timeout=timeout,
                poll_interval=poll_interval,
                max_interval=max_interval,
            )
        )

    # -- new generation, wire objects -------------------------------------------

    def get_tasks(
        self,
        task_ids: Sequence[str],
        *,
        external: bool = False,
        batch_size: int | None = None,
    ) -> builtins.list[Task2026]:
        """``GET /tasks`` in batches (shrunk when Kling refuses a long one)."""
        return self._run(self._get_tasks_op(task_ids, external, batch_size))

    def query_tasks(self, query: TaskQuery = TaskQuery()) -> TaskPage:
        """One page of ``POST /tasks``; pass ``page.next_cursor`` for the next."""
        return self._run(self._query_op(query))

    def query_all(
        self, query: TaskQuery = TaskQuery(), *, max_pages: int = 1000
    ) -> builtins.list[Task2026]:
        """Every task ``POST /tasks`` pages out for the query, by cursor."""
        return self._run(self._query_all_op(query, max_pages))

    def account_costs(self) -> AccountCosts:
        """``GET /account/costs``: each resource pack's remaining units (they may
        lag by hours; Kling allows one call a second)."""
        return self._run(self._costs_op())

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncKlingClient(_BaseClient):
    """The Kling API over ``httpx.AsyncClient``; same methods, awaited."""

    def __init__(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        clock: Clock | None = None,
        rng: random.Random | None = None,
        tasks_batch_size: int = TASKS_BATCH_SIZE,
    ) -> None:
        super().__init__(
            access_key=access_key,
            secret_key=secret_key,
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            retry=retry,
            clock=clock,
            rng=rng,
            tasks_batch_size=tasks_batch_size,
        )
        self._http = httpx.AsyncClient(
            auth=self._auth,
            transport=transport,
            timeout=timeout,
            event_hooks={"request": [self._acount]},
        )

    async def _acount(self, request: httpx.Request) -> None:
        self._count(request)

    async def _run(self, operation: Generator[Action, Outcome, T]) -> T:
        outcome: Outcome = None
        try:
            while True:
                action = operation.send(outcome)
                if isinstance(action, Send):
                    try:
                        outcome = await self._http.send(action.request)
                    except httpx.TransportError as exc:
                        outcome = exc
                else:
                    await self._clock.asleep(action.seconds)
                    outcome = None
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def create(
        self,
        request: TaskRequest,
        *,
        external_task_id: str | None = None,
        callback_url: str | None = None,
    ) -> Task:
        """Create a task; an unknown outcome is resolved by its external id."""
        return await self._run(self._create_op(request, external_task_id, callback_url))

    async def get(
        self,
        endpoint: str,
        task_id: str | None = None,
        *,
        external_task_id: str | None = None,
    ) -> Task:
        """One task by task id or external id."""
        return await self._run(self._get_op(endpoint, task_id, external_task_id))

    async def list(
        self,
        endpoint: str,
        *,
        page: int = 1,
        page_size: int = 30,
        only: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> builtins.list[Task]:
        """One page of an endpoint's tasks; ``only`` as in :meth:`KlingClient.list`."""
        return await self._run(self._list_op(endpoint, page, page_size, only))

    async def wait(
        self,
        endpoint: str,
        task: str | Task | None = None,
        *,
        external_task_id: str | None = None,
        timeout: float = 600,  # noqa: ASYNC109 - Kling time budget, same as sync
        poll_interval: float = 2.0,
        max_interval: float = 30.0,
    ) -> Task:
        """Poll until the task succeeds (returned) or fails (TaskFailedError)."""
        return await self._run(
            self._wait_op(
                endpoint,
                task=task,
                external_task_id=external_task_id,
                timeout=timeout,
                poll_interval=poll_interval,
                max_interval=max_interval,
            )
        )

    # -- either generation, as Snapshots ----------------------------------------

    async def submit(
        self,
        request: TaskRequest,
        *,
        external_task_id: str | None = None,
        callback_url: str | None = None,
    ) -> Snapshot:
        """Create a task of either generation; an unknown outcome is looked up."""
        return await self._run(self._submit_op(request, external_task_id, callback_url))

    async def fetch(
        self,
        endpoint: str,
        task_ids: Sequence[str],
        *,
        batch_size: int | None = None,
    ) -> dict[str, Snapshot]:
        """Snapshots by Kling's ids; an id Kling does not know is simply missing.

        The new generation asks ``GET /tasks?task_ids=`` in batches; the legacy one
        asks each task's path.
        """
        return await self._run(
            self._fetch_op(endpoint, task_ids, external=False, batch_size=batch_size)
        )

    async def fetch_external(
        self,
        endpoint: str,
        external_task_ids: Sequence[str],
        *,
        batch_size: int | None = None,
    ) -> dict[str, Snapshot]:
        """Snapshots by our external ids (keys); unknown ones are missing."""
        return await self._run(
            self._fetch_op(
                endpoint, external_task_ids, external=True, batch_size=batch_size
            )
        )

    async def fetch_one(
        self,
        endpoint: str,
        task_id: str | None = None,
        *,
        external_task_id: str | None = None,
    ) -> Snapshot:
        """One task of either generation; TaskNotFoundError when Kling has none."""
        return await self._run(self._fetch_one_op(endpoint, task_id, external_task_id))

    async def wait_snapshot(
        self,
        endpoint: str,
        task_id: str | None = None,
        *,
        external_task_id: str | None = None,
        timeout: float = 600,  # noqa: ASYNC109 - Kling time budget, same as sync
        poll_interval: float = 2.0,
        max_interval: float = 30.0,
    ) -> Snapshot:
        """Poll either generation until the task succeeds (or TaskFailedError)."""
        return await self._run(
            self._wait_snapshot_op(
                endpoint,
                task_id,
                external_task_id,
                timeout=timeout,
                poll_interval=poll_interval,
                max_interval=max_interval,
            )
        )

    # -- new generation, wire objects -------------------------------------------

    async def get_tasks(
        self,
        task_ids: Sequence[str],
        *,
        external: bool = False,
        batch_size: int | None = None,
    ) -> builtins.list[Task2026]:
        """``GET /tasks`` in batches (shrunk when Kling refuses a long one)."""
        return await self._run(self._get_tasks_op(task_ids, external, batch_size))

    async def query_tasks(self, query: TaskQuery = TaskQuery()) -> TaskPage:
        """One page of ``POST /tasks``; pass ``page.next_cursor`` for the next."""
        return await self._run(self._query_op(query))

    async def query_all(
        self, query: TaskQuery = TaskQuery(), *, max_pages: int = 1000
    ) -> builtins.list[Task2026]:
        """Every task ``POST /tasks`` pages out for the query, by cursor."""
        return await self._run(self._query_all_op(query, max_pages))

    async def account_costs(self) -> AccountCosts:
        """``GET /account/costs``: each resource pack's remaining units (they may
        lag by hours; Kling allows one call a second)."""
        return await self._run(self._costs_op())

    async def aclose(self) -> None:
        await self._http.aclose()

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
