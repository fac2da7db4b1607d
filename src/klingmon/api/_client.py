"""``KlingClient`` and ``AsyncKlingClient``: thin drivers over the shared operations.

All request building, parsing, retrying and waiting lives in :mod:`._ops`; each
client only carries out the ``Send`` and ``Sleep`` actions, with its own httpx
client and its own way of sleeping.
"""

from __future__ import annotations

import os
import random
from collections import Counter
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx

from klingmon._clock import Clock, SystemClock
from klingmon.api import _protocol as proto
from klingmon.api._auth import ApiKeyAuth, JwtAuth
from klingmon.api._models import Task
from klingmon.api._ops import Action, Operations, Outcome, Send
from klingmon.api._requests import resolve_endpoint
from klingmon.api._retry import RetryPolicy
from klingmon.errors import ConfigError

if TYPE_CHECKING:
    import builtins
    from collections.abc import Callable, Generator, Mapping
    from types import TracebackType

    from klingmon.api._requests import TaskRequest

__all__ = ["DEFAULT_BASE_URL", "AsyncKlingClient", "KlingClient"]

T = TypeVar("T")

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
_ENV_ACCESS = "KLING_ACCESS_KEY"
_ENV_SECRET = "KLING_SECRET_KEY"  # noqa: S105 - the variable's name, not a secret
_ENV_API_KEY = "KLING_API_KEY"
_ENV_BASE = "KLING_API_BASE"


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
    ) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self.auth: httpx.Auth
        if access_key and secret_key:
            self.auth = JwtAuth(access_key, secret_key, self._clock)
        elif api_key:
            self.auth = ApiKeyAuth(api_key)
        else:
            raise ConfigError(
                f"no Kling credentials: set {_ENV_ACCESS} and {_ENV_SECRET}, "
                f"or {_ENV_API_KEY}"
            )
        self.base_url = base_url.rstrip("/")
        #: HTTP requests actually sent, by "create", "get" and "list".
        self.requests_sent: Counter[str] = Counter()
        self._ops = Operations(
            base_url=self.base_url,
            timeout=timeout,
            retry=retry,
            clock=self._clock,
            rng=rng if rng is not None else random.Random(),
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """A client from ``KLING_ACCESS_KEY``/``KLING_SECRET_KEY`` or ``KLING_API_KEY``.

        ``KLING_API_BASE`` sets the base URL; keyword arguments win over the
        environment.
        """
        env: dict[str, Any] = {}
        access, secret = os.environ.get(_ENV_ACCESS), os.environ.get(_ENV_SECRET)
        if access and secret:
            env["access_key"], env["secret_key"] = access, secret
        elif os.environ.get(_ENV_API_KEY):
            env["api_key"] = os.environ[_ENV_API_KEY]
        elif access or secret:
            missing = _ENV_SECRET if access else _ENV_ACCESS
            raise ConfigError(f"{missing} is not set ({_ENV_ACCESS} needs both)")
        if os.environ.get(_ENV_BASE):
            env["base_url"] = os.environ[_ENV_BASE]
        return cls(**{**env, **overrides})

    def _count(self, request: httpx.Request) -> None:
        self.requests_sent[proto.request_kind(request)] += 1

    def _create_op(
        self,
        request: TaskRequest,
        external_task_id: str | None,
        callback_url: str | None,
    ) -> Generator[Action, Outcome, Task]:
        return self._ops.create(
            request, external_task_id=external_task_id, callback_url=callback_url
        )

    def _get_op(
        self, endpoint: str, task_id: str | None, external_task_id: str | None
    ) -> Generator[Action, Outcome, Task]:
        path = resolve_endpoint(endpoint)
        return self._ops.get(path, task_id, external_task_id=external_task_id)

    def _list_op(
        self,
        endpoint: str,
        page: int,
        page_size: int,
        only: Callable[[Mapping[str, Any]], bool] | None,
    ) -> Generator[Action, Outcome, builtins.list[Task]]:
        return self._ops.list(resolve_endpoint(endpoint), page, page_size, only)

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
        return self._ops.wait(
            resolve_endpoint(endpoint),
            task_id=task_id,
            external_task_id=external_task_id,
            known=known,
            timeout=timeout,
            poll_interval=poll_interval,
            max_interval=max_interval,
        )

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
        )
        self._http = httpx.Client(
            auth=self.auth,
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
        )
        self._http = httpx.AsyncClient(
            auth=self.auth,
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
