"""Each client operation written once, as a generator of I/O actions.

An operation yields :class:`Send` (and receives the ``httpx.Response`` or the
``httpx.TransportError`` it produced) or :class:`Sleep` (and receives None). The
sync client drives it with ``httpx.Client`` and ``clock.sleep``, the async client
with ``httpx.AsyncClient`` and ``await clock.asleep``; retry, ambiguity resolution
and the wait loop exist only here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import httpx

from klingmon.api import _protocol as proto
from klingmon.api._retry import (
    RetryPolicy,
    create_not_created,
    is_ambiguous_transport,
    is_transient,
    poll_delay,
    transport_error,
)
from klingmon.domain import TaskStatus
from klingmon.errors import (
    ApiError,
    InvalidRequestError,
    KlingmonError,
    RequestValidationError,
    SchemaDriftError,
    TaskFailedError,
    TaskNotFoundError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)

if TYPE_CHECKING:
    import builtins
    import random
    from collections.abc import Callable, Generator, Mapping

    from klingmon._clock import Clock
    from klingmon.api._models import Envelope, Task
    from klingmon.api._requests import TaskRequest

__all__ = ["Action", "Operations", "Outcome", "Send", "Sleep"]

logger = logging.getLogger(__name__)

#: Consecutive sightings of an undocumented status before a wait gives up.
DRIFT_SIGHTINGS = 3


@dataclass(frozen=True, slots=True)
class Send:
    """Send this request; answer with the response or the transport exception."""

    request: httpx.Request


@dataclass(frozen=True, slots=True)
class Sleep:
    """Pause for this many seconds on the client's clock."""

    seconds: float


Action: TypeAlias = Send | Sleep
Outcome: TypeAlias = httpx.Response | httpx.TransportError | None
T = TypeVar("T")


def _log_exchange(request: httpx.Request, outcome: Outcome, attempt: int) -> None:
    if not logger.isEnabledFor(logging.DEBUG):
        return
    extra: dict[str, Any] = {
        "method": request.method,
        "path": request.url.path,
        "attempt": attempt,
    }
    if isinstance(outcome, httpx.Response):
        extra["status"] = outcome.status_code
        try:
            body = json.loads(outcome.content)
        except ValueError:
            body = None
        if isinstance(body, dict):
            extra["code"] = body.get("code")
            extra["request_id"] = body.get("request_id")
    else:
        extra["error"] = type(outcome).__name__
    logger.debug("kling.exchange", extra=extra)


def _error_extra(error: KlingmonError) -> dict[str, Any]:
    if isinstance(error, ApiError):
        return {
            "status": error.status_code,
            "code": error.code,
            "request_id": error.request_id,
        }
    return {"error": error.message}


class Operations:
    """The operation generators for one client configuration."""

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        retry: RetryPolicy,
        clock: Clock,
        rng: random.Random,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self.clock = clock
        self.rng = rng

    # -- queries ---------------------------------------------------------------

    def _query(
        self,
        request: httpx.Request,
        parse: Callable[[httpx.Response], T],
        *,
        deadline: float | None = None,
    ) -> Generator[Action, Outcome, T]:
        """Send a GET, retrying transient failures with backoff."""
        attempt = 0
        while True:
            attempt += 1
            outcome = yield Send(request)
            _log_exchange(request, outcome, attempt)
            try:
                if isinstance(outcome, httpx.TransportError):
                    raise transport_error(outcome) from outcome
                assert outcome is not None  # noqa: S101 - a Send is answered
                return parse(outcome)
            except KlingmonError as error:
                if attempt >= self.retry.attempts or not is_transient(error):
                    raise
                retry_after = getattr(error, "retry_after", None)
                delay = self.retry.backoff(attempt, self.rng, retry_after)
                if deadline is not None and self.clock.now() + delay >= deadline:
                    raise
                logger.info(
                    "kling.retry",
                    extra={
                        "method": request.method,
                        "path": request.url.path,
                        "attempt": attempt,
                        "delay": round(delay, 3),
                        **_error_extra(error),
                    },
                )
                yield Sleep(delay)

    def _single(self, response: httpx.Response, ref: str) -> Envelope:
        """The envelope of a single-task query; a 404 from Kling is "not found"."""
        try:
            return proto.read_envelope(response, self.clock.now())
        except TaskNotFoundError:
            raise
        except ApiError as error:
            if response.status_code == 404 and error.code is not None:
                raise proto.not_found(ref, error) from None
            raise

    def _one_task(self, response: httpx.Response, ref: str) -> Task:
        return proto.task_from(self._single(response, ref), response.status_code)

    def get(
        self,
        path: str,
        task_id: str | None = None,
        *,
        external_task_id: str | None = None,
        deadline: float | None = None,
    ) -> Generator[Action, Outcome, Task]:
        """One task by Kling's id (path) or by our external id."""
        if (task_id is None) == (external_task_id is None):
            raise RequestValidationError(
                "give exactly one of task_id and external_task_id"
            )
        if task_id is not None:
            request = proto.build_get(self.base_url, path, task_id, self.timeout)
            return (
                yield from self._query(
                    request, lambda r: self._one_task(r, task_id), deadline=deadline
                )
            )
        assert external_task_id is not None  # noqa: S101 - checked above
        return (yield from self._by_external(path, external_task_id, deadline))

    def _by_external(
        self, path: str, external_task_id: str, deadline: float | None
    ) -> Generator[Action, Outcome, Task]:
        """``GET <path>?external_task_id=``; the path form if the filter was ignored."""

        def parse(response: httpx.Response) -> Task | None:
            envelope = self._single(response, external_task_id)
            return proto.pick_external(envelope, response.status_code, external_task_id)

        request = proto.build_get_by_external(
            self.base_url, path, external_task_id, self.timeout
        )
        task = yield from self._query(request, parse, deadline=deadline)
        if task is not None:
            return task
        # The server answered a list page without our task: ask by path instead.
        request = proto.build_get(self.base_url, path, external_task_id, self.timeout)
        task = yield from self._query(
            request, lambda r: self._one_task(r, external_task_id), deadline=deadline
        )
        if task.external_task_id not in (None, external_task_id):
            raise proto.not_found(external_task_id)
        return task

    def list(
        self,
        path: str,
        page: int,
        page_size: int,
        only: Callable[[Mapping[str, Any]], bool] | None = None,
    ) -> Generator[Action, Outcome, builtins.list[Task]]:
        """One list page of an endpoint."""
        request = proto.build_list(self.base_url, path, page, page_size, self.timeout)

        def parse(response: httpx.Response) -> builtins.list[Task]:
            envelope = proto.read_envelope(response, self.clock.now())
            return proto.tasks_from(envelope, response.status_code, only)

        return (yield from self._query(request, parse))

    # -- create ------------------------------------------------------------------

    def create(
        self,
        request: TaskRequest,
        *,
        external_task_id: str | None,
        callback_url: str | None,
    ) -> Generator[Action, Outcome, Task]:
        """POST a task, never twice blindly: unknown outcomes are looked up first."""
        minted = external_task_id or proto.mint_external_task_id()
        prepared = request.with_ids(external_task_id=minted, callback_url=callback_url)
        ext = prepared.external_task_id or minted
        path = prepared.endpoint_path()
        body = prepared.body()
        error: KlingmonError | None = None
        looked_up = False
        for attempt in range(1, self.retry.attempts + 1):
            if attempt > 1:
                retry_after = getattr(error, "retry_after", None)
                yield Sleep(self.retry.backoff(attempt - 1, self.rng, retry_after))
            http_request = proto.build_create(self.base_url, path, body, self.timeout)
            outcome = yield Send(http_request)
            _log_exchange(http_request, outcome, attempt)
            ambiguous = False
            if isinstance(outcome, httpx.TransportError):
                error = transport_error(outcome)
                ambiguous = is_ambiguous_transport(outcome)
            else:
                assert outcome is not None  # noqa: S101 - a Send is answered
                try:
                    envelope = proto.read_envelope(outcome, self.clock.now())
                    return proto.task_from(envelope, outcome.status_code)
                except UnexpectedResponseError as exc:
                    error = exc
                    status = exc.status_code
                    ambiguous = status < 300 or status >= 500
                    if not ambiguous:
                        raise
                except InvalidRequestError as exc:
                    # A re-POST after a lookup may hit the duplicate-id check of a
                    # task that was created but not yet visible: look once more.
                    if not looked_up:
                        raise
                    error = exc
                    ambiguous = True
                except ApiError as exc:
                    if not create_not_created(exc):
                        raise
                    error = exc
            logger.info(
                "kling.create_retry",
                extra={
                    "external_task_id": ext,
                    "attempt": attempt,
                    "ambiguous": ambiguous,
                    **_error_extra(error),
                },
            )
            if ambiguous:
                looked_up = True
                try:
                    return (yield from self._by_external(path, ext, None))
                except TaskNotFoundError:
                    if isinstance(error, InvalidRequestError):
                        raise error from None
                except KlingmonError as lookup_error:
                    if not is_transient(lookup_error):
                        raise
                    raise TransportError(
                        f"create outcome unknown for external_task_id {ext!r}: "
                        f"the lookup failed too ({lookup_error.message})"
                    ) from lookup_error
        assert error is not None  # noqa: S101 - the loop ran at least once
        raise error

    # -- wait --------------------------------------------------------------------

    def wait(
        self,
        path: str,
        *,
        task_id: str | None,
        external_task_id: str | None,
        known: Task | None,
        timeout: float,
        poll_interval: float,
        max_interval: float,
    ) -> Generator[Action, Outcome, Task]:
        """Poll until the task ends; the interval grows, transient errors pass."""
        ref = task_id or external_task_id or "?"
        if known is not None and known.status in (
            TaskStatus.SUCCEED,
            TaskStatus.FAILED,
        ):
            return _finished(known)
        deadline = self.clock.now() + timeout
        last = known
        drift = 0
        poll = 0
        while True:
            poll += 1
            try:
                task = yield from self.get(
                    path, task_id, external_task_id=external_task_id, deadline=deadline
                )
            except (TransportError, ApiError) as error:
                if not is_transient(error):
                    raise
                logger.info(
                    "kling.wait_poll_failed",
                    extra={"task": ref, "poll": poll, **_error_extra(error)},
                )
            else:
                last = task
                status = task.status
                if status in (TaskStatus.SUCCEED, TaskStatus.FAILED):
                    return _finished(task)
                drift = drift + 1 if status is None else 0
                if drift >= DRIFT_SIGHTINGS:
                    raise SchemaDriftError(
                        f"task {ref} reported status {task.task_status!r} "
                        f"{drift} times; klingmon does not know it"
                    )
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                raise WaitTimeoutError(ref, timeout, last)
            delay = poll_delay(poll, self.rng, first=poll_interval, cap=max_interval)
            yield Sleep(min(delay, remaining))


def _finished(task: Task) -> Task:
    if task.status is TaskStatus.FAILED:
        raise TaskFailedError(task)
    return task
