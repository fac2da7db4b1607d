"""``KlingClient`` and ``AsyncKlingClient``: thin drivers over the shared operations.

All request building, parsing, retrying and waiting lives in :mod:`._ops`; each
client only carries out the ``Send`` and ``Sleep`` actions, with its own httpx
client and its own way of sleeping.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx

from klingmon._clock import Clock, SystemClock
from klingmon.api import _protocol as proto
from klingmon.api._auth import ApiKeyAuth, GenerationAuth, JwtAuth, check_auth
from klingmon.api._endpoints import Generation, generation_of, resolve_endpoint
from klingmon.api._models import Task
from klingmon.api._ops import TASKS_BATCH_SIZE, Action, Operations, Outcome, Send
from klingmon.api._protocol2026 import TASKS_PATH
from klingmon.api._retry import RetryPolicy
from klingmon.api._tasks import snapshot_of
from klingmon.api._wire2026 import Task2026, TaskPage, snapshot2026
from klingmon.errors import ConfigError, RequestValidationError, TaskNotFoundError

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Generator, Mapping, Sequence
    from types import TracebackType

    from klingmon.api._requests import TaskRequest
    from klingmon.api._tasks import AnyTask
    from klingmon.domain import Snapshot

__all__ = ["DEFAULT_BASE_URL", "AsyncKlingClient", "KlingClient", "TaskQuery"]

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
_ENV_ACCESS = "KLING_ACCESS_KEY"
_ENV_SECRET = "KLING_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
_ENV_API_KEY = "KLING_API_KEY"
_ENV_BASE = "KLING_API_BASE"


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """A filtered ``POST /tasks`` query (new generation); times are epoch ms."""

    statuses: tuple[str, ...] = ()
    product_types: tuple[str, ...] = ()
    since_ms: int | None = None
    until_ms: int | None = None
    cursor: str | None = None
    limit: int = 100


def _legacy_only(path: str, method: str, instead: str) -> None:
    if generation_of(path) is Generation.V2026:
        raise RequestValidationError(
            f"{method}() returns the legacy wire task; for the new-generation "
            f"endpoint {path} use {instead}()"
        )


def _as_legacy(
    operation: Generator[Action, Outcome, AnyTask],
) -> Generator[Action, Outcome, Task]:
    task = yield from operation
    assert isinstance(task, Task)  # noqa: S101 - the path was checked legacy
    return task


class _BaseClient:
    """Configuration and operation set-up shared by both clients."""

    def __init__(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 30.0,
        retry: RetryPolicy = RetryPolicy(),
        clock: Clock | None = None,
        rng: random.Random | None = None,
        tasks_batch_size: int = TASKS_BATCH_SIZE,
    ) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        #: The API key, for the new generation (and the legacy one without a pair).
        self.api_key_auth = ApiKeyAuth(api_key) if api_key else None
        #: What signs legacy requests: the JWT of the pair, else the API key.
        self.auth: httpx.Auth
        if access_key and secret_key:
            self.auth = JwtAuth(access_key, secret_key, self._clock)
        elif self.api_key_auth is not None:
            self.auth = self.api_key_auth
        else:
            raise ConfigError(
                f"no Kling credentials: set {_ENV_ACCESS} and {_ENV_SECRET}, "
                f"or {_ENV_API_KEY}"
            )
        self._auth = GenerationAuth(self.auth, self.api_key_auth)
        self.base_url = base_url.rstrip("/")
        #: HTTP requests actually sent, by "create", "get" and "list".
        self.requests_sent: Counter[str] = Counter()
        self._ops = Operations(
            base_url=self.base_url,
            timeout=timeout,
            retry=retry,
            clock=self._clock,
            rng=rng if rng is not None else random.Random(),
            tasks_batch_size=tasks_batch_size,
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """A client from ``KLING_ACCESS_KEY``/``KLING_SECRET_KEY`` or ``KLING_API_KEY``.

        ``KLING_API_BASE`` sets the base URL; keyword arguments win over the
        environment.
        """
        env: dict[str, Any] = {}
        access, secret = os.environ.get(_ENV_ACCESS), os.environ.get(_ENV_SECRET)
        if os.environ.get(_ENV_API_KEY):
            env["api_key"] = os.environ[_ENV_API_KEY]
        if access and secret:
            env["access_key"], env["secret_key"] = access, secret
        elif (access or secret) and "api_key" not in env:
            missing = _ENV_SECRET if access else _ENV_ACCESS
            raise ConfigError(f"{missing} is not set ({_ENV_ACCESS} needs both)")
        if os.environ.get(_ENV_BASE):
            env["base_url"] = os.environ[_ENV_BASE]
        return cls(**{**env, **overrides})

    def check_endpoint(self, endpoint: str) -> None:
        """Raise ConfigError (naming ``KLING_API_KEY``) if this client cannot reach it.

        Call it before anything is stored or sent: the new generation takes an API
        key only, and an access/secret pair alone would be refused with 401/1002.
        """
        check_auth(
            endpoint,
            has_api_key=self.api_key_auth is not None,
            has_key_pair=isinstance(self.auth, JwtAuth),
        )

    def _count(self, request: httpx.Request) -> None:
        self.requests_sent[proto.request_kind(request)] += 1

    def _create_op(
        self,
        request: TaskRequest,
        external_task_id: str | None,
        callback_url: str | None,
    ) -> Generator[Action, Outcome, Task]:
        _legacy_only(request.endpoint_path(), "create", "submit")
        return _as_legacy(
            self._ops.create(
                request, external_task_id=external_task_id, callback_url=callback_url
            )
        )

    def _get_op(
        self, endpoint: str, task_id: str | None, external_task_id: str | None
    ) -> Generator[Action, Outcome, Task]:
        path = resolve_endpoint(endpoint)
        _legacy_only(path, "get", "fetch")
        return _as_legacy(
            self._ops.get(path, task_id, external_task_id=external_task_id)
        )

    def _list_op(
        self,
        endpoint: str,
        page: int,
        page_size: int,
        only: Callable[[Mapping[str, Any]], bool] | None,
    ) -> Generator[Action, Outcome, builtins.list[Task]]:
        path = resolve_endpoint(endpoint)
        _legacy_only(path, "list", "query_tasks")
        return self._ops.list(path, page, page_size, only)

    def _wait_op(
        self,
        endpoint: str,
        *,
        task: str | Task | None,
        external_task_id: str | None,
        timeout: float,
        poll_interval: float,
        max_interval: float,
    ) -> Generator[Action, Outcome, Task]:
        known = task if isinstance(task, Task) else None
        task_id = task.task_id if isinstance(task, Task) else task
        if task_id is not None:
            external_task_id = None
        path = resolve_endpoint(endpoint)
        _legacy_only(path, "wait", "wait_snapshot")
        return _as_legacy(
            self._ops.wait(
                path,
                task_id=task_id,
                external_task_id=external_task_id,
                known=known,
                timeout=timeout,
                poll_interval=poll_interval,
                max_interval=max_interval,
            )
        )

    # -- generation-neutral operations: Snapshots for either generation --------

    def _submit_op(
        self,
        request: TaskRequest,
        external_task_id: str | None,
        callback_url: str | None,
    ) -> Generator[Action, Outcome, Snapshot]:
        self.check_endpoint(request.endpoint_path())
        task = yield from self._ops.create(
            request, external_task_id=external_task_id, callback_url=callback_url
        )
        return snapshot_of(task)

    def _fetch_op(
        self,
        endpoint: str,
        ids: Sequence[str],
        *,
        external: bool,
        batch_size: int | None,
    ) -> Generator[Action, Outcome, dict[str, Snapshot]]:
        """Snapshots by id (or external id); ids Kling does not know are missing."""
        path = resolve_endpoint(endpoint)
        self.check_endpoint(path)
        found: dict[str, Snapshot] = {}
        if generation_of(path) is Generation.V2026:
            tasks = yield from self._ops.get_tasks(
                ids, external=external, batch_size=batch_size
            )
            for task in tasks:
                key = task.external_id if external else task.id
                if key is not None:
                    found[key] = snapshot2026(task)
            return found
        for ref in dict.fromkeys(ids):
            try:
                legacy = yield from self._ops.get(
                    path,
                    None if external else ref,
                    external_task_id=ref if external else None,
                )
            except TaskNotFoundError:
                continue
            found[ref] = snapshot_of(legacy)
        return found

    def _fetch_one_op(
        self, endpoint: str, task_id: str | None, external_task_id: str | None
    ) -> Generator[Action, Outcome, Snapshot]:
        path = resolve_endpoint(endpoint)
        self.check_endpoint(path)
        task = yield from self._ops.get(
            path, task_id, external_task_id=external_task_id
        )
        return snapshot_of(task)

    def _wait_snapshot_op(
        self,
        endpoint: str,
        task_id: str | None,
        external_task_id: str | None,
        *,
        timeout: float,
        poll_interval: float,
        max_interval: float,
    ) -> Generator[Action, Outcome, Snapshot]:
        path = resolve_endpoint(endpoint)
        self.check_endpoint(path)
        task = yield from self._ops.wait(
            path,
            task_id=task_id,
            external_task_id=None if task_id is not None else external_task_id,
            known=None,
            timeout=timeout,
            poll_interval=poll_interval,
            max_interval=max_interval,
        )
        return snapshot_of(task)

    def _query_op(self, query: TaskQuery) -> Generator[Action, Outcome, TaskPage]:
        self.check_endpoint(TASKS_PATH)
        return self._ops.query_tasks(
            statuses=query.statuses,
            product_types=query.product_types,
            since_ms=query.since_ms,
            until_ms=query.until_ms,
            cursor=query.cursor,
            limit=query.limit,
        )

    def _query_all_op(
        self, query: TaskQuery, max_pages: int
    ) -> Generator[Action, Outcome, builtins.list[Task2026]]:
        self.check_endpoint(TASKS_PATH)
        return self._ops.query_all(
            statuses=query.statuses,
            product_types=query.product_types,
            since_ms=query.since_ms,
            until_ms=query.until_ms,
            limit=query.limit,
            max_pages=max_pages,
        )

    def _get_tasks_op(
        self, ids: Sequence[str], external: bool, batch_size: int | None
    ) -> Generator[Action, Outcome, builtins.list[Task2026]]:
        self.check_endpoint(TASKS_PATH)
        return self._ops.get_tasks(ids, external=external, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, auth={self.auth!r})"


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
