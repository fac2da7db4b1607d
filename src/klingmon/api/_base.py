"""Client configuration and the operations both clients build: one copy for both.

``_BaseClient`` holds credentials (one auth per generation), the base URL, the
request counters and the :class:`~klingmon.api._ops.Operations`; each method here
returns an operation generator that :mod:`._client`'s drivers run.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

from klingmon._clock import Clock, SystemClock
from klingmon.api import _protocol as proto
from klingmon.api._auth import ApiKeyAuth, GenerationAuth, JwtAuth, check_auth
from klingmon.api._endpoints import Generation, generation_of, resolve_endpoint
from klingmon.api._models import Task
from klingmon.api._ops import TASKS_BATCH_SIZE, Action, Operations, Outcome
from klingmon.api._protocol2026 import TASKS_PATH
from klingmon.api._retry import RetryPolicy
from klingmon.api._tasks import snapshot_of
from klingmon.api._wire2026 import snapshot2026
from klingmon.errors import ConfigError, RequestValidationError, TaskNotFoundError

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Generator, Mapping, Sequence

    import httpx

    from klingmon.api._requests import TaskRequest
    from klingmon.api._tasks import AnyTask
    from klingmon.api._wire2026 import AccountCosts, Task2026, TaskPage
    from klingmon.domain import Snapshot

__all__ = ["DEFAULT_BASE_URL", "TaskQuery"]

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
            tasks = yield from self._ops.tasks2026.get_tasks(
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
        return self._ops.tasks2026.query_tasks(
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
        return self._ops.tasks2026.query_all(
            statuses=query.statuses,
            product_types=query.product_types,
            since_ms=query.since_ms,
            until_ms=query.until_ms,
            limit=query.limit,
            max_pages=max_pages,
        )

    def _costs_op(self) -> Generator[Action, Outcome, AccountCosts]:
        until_ms = int(self._ops.tasks2026.clock.now() * 1000)
        return self._ops.tasks2026.account_costs(
            since_ms=until_ms - 365 * 86_400_000, until_ms=until_ms
        )

    def _get_tasks_op(
        self, ids: Sequence[str], external: bool, batch_size: int | None
    ) -> Generator[Action, Outcome, builtins.list[Task2026]]:
        self.check_endpoint(TASKS_PATH)
        return self._ops.tasks2026.get_tasks(
            ids, external=external, batch_size=batch_size
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r}, auth={self.auth!r})"
