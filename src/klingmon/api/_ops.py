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
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar, cast

import httpx

from klingmon.api import _protocol as proto
from klingmon.api import _protocol2026 as proto26
from klingmon.api._endpoints import Generation, generation_of
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
    from collections.abc import Callable, Generator, Mapping, Sequence

    from klingmon._clock import Clock
    from klingmon.api._models import Envelope, Task
    from klingmon.api._requests import TaskRequest
    from klingmon.api._tasks import AnyTask
    from klingmon.api._wire2026 import Task2026, TaskPage

__all__ = ["Action", "Operations", "Outcome", "Send", "Sleep"]

logger = logging.getLogger(__name__)

#: Consecutive sightings of an undocumented status before a wait gives up.
DRIFT_SIGHTINGS = 3
#: Ids per ``GET /tasks`` until Kling refuses a batch (the limit is unconfirmed).
TASKS_BATCH_SIZE = 100
#: HTTP statuses with which a server may refuse a batch that is too long.
_TOO_LONG = frozenset({400, 413, 414})


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
        tasks_batch_size: int = TASKS_BATCH_SIZE,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        #: Ids per ``GET /tasks``; shrinks when Kling refuses a long batch.
        self.tasks_batch_size = max(1, tasks_batch_size)
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
    ) -> Generator[Action, Outcome, AnyTask]:
        """One task by Kling's id or by our external id, on either generation.

        A new-generation path asks ``GET /tasks``; a task missing from its answer
        is :class:`TaskNotFoundError`, as a legacy 404 is.
        """
        if (task_id is None) == (external_task_id is None):
            raise RequestValidationError(
                "give exactly one of task_id and external_task_id"
            )
        if generation_of(path) is Generation.V2026:
            if task_id is not None:
                return (yield from self._one_2026(task_id, deadline))
            assert external_task_id is not None  # noqa: S101 - checked above
            return (yield from self._one_by_external_2026(external_task_id))
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
    ) -> Generator[Action, Outcome, AnyTask]:
        """POST a task, never twice blindly: unknown outcomes are looked up first.

        The answer is the generation's own task (``Task`` on ``/v1/...`` paths,
        ``Task2026`` on ``/<family>/<model>``).
        """
        minted = external_task_id or proto.mint_external_task_id()
        prepared = request.with_ids(external_task_id=minted, callback_url=callback_url)
        ext = prepared.external_task_id or minted
        path = prepared.endpoint_path()
        new = generation_of(path) is Generation.V2026
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
            verdict = self._create_verdict(outcome, new=new, looked_up=looked_up)
            if not isinstance(verdict, tuple):
                return verdict
            error, ambiguous = verdict
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
                found = yield from self._resolve_create(path, ext, error, new=new)
                if found is not None:
                    return found
        assert error is not None  # noqa: S101 - the loop ran at least once
        raise error

    def _create_verdict(
        self, outcome: Outcome, *, new: bool, looked_up: bool
    ) -> AnyTask | tuple[KlingmonError, bool]:
        """The created task, or the error and whether the create may have happened.

        Raises the errors that certainly mean "not created, do not retry".
        """
        if isinstance(outcome, httpx.TransportError):
            return transport_error(outcome), is_ambiguous_transport(outcome)
        assert outcome is not None  # noqa: S101 - a Send is answered
        try:
            envelope = proto.read_envelope(outcome, self.clock.now())
            if new:
                return proto26.task2026_from(envelope, outcome.status_code)
            return proto.task_from(envelope, outcome.status_code)
        except UnexpectedResponseError as exc:
            status = exc.status_code
            if 300 <= status < 500:
                raise
            return exc, True
        except InvalidRequestError as exc:
            # A re-POST after a lookup may hit the duplicate-id check of a task
            # that was created but not yet visible: look once more.
            if not looked_up:
                raise
            return exc, True
        except ApiError as exc:
            if not create_not_created(exc):
                raise
            return exc, False

    def _resolve_create(
        self, path: str, ext: str, error: KlingmonError, *, new: bool
    ) -> Generator[Action, Outcome, AnyTask | None]:
        """Look up a create of unknown outcome by its external id; None if absent."""
        try:
            if new:
                return (yield from self._one_by_external_2026(ext))
            return (yield from self._by_external(path, ext, None))
        except TaskNotFoundError:
            if isinstance(error, InvalidRequestError):
                raise error from None
            return None
        except KlingmonError as lookup_error:
            if not is_transient(lookup_error):
                raise
            raise TransportError(
                f"create outcome unknown for external_task_id {ext!r}: "
                f"the lookup failed too ({lookup_error.message})"
            ) from lookup_error

    # -- new generation: batched and filtered queries --------------------------

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
        size = max(1, min(batch_size or self.tasks_batch_size, self.tasks_batch_size))
        found: builtins.list[Task2026] = []
        start = 0
        while start < len(wanted):
            chunk = wanted[start : start + size]
            request = proto26.build_get_tasks(
                self.base_url, chunk, external=external, timeout=self.timeout
            )
            try:
                found += yield from self._query(
                    request, self._tasks_answer, deadline=deadline
                )
            except (InvalidRequestError, UnexpectedResponseError) as error:
                if len(chunk) == 1 or error.status_code not in _TOO_LONG:
                    raise
                size = max(1, len(chunk) // 2)
                self.tasks_batch_size = size
                logger.info(
                    "kling.tasks_batch_shrunk",
                    extra={"batch_size": size, **_error_extra(error)},
                )
                continue
            start += len(chunk)
        return found

    def _tasks_answer(self, response: httpx.Response) -> builtins.list[Task2026]:
        envelope = proto.read_envelope(response, self.clock.now())
        return proto26.tasks2026_from(envelope, response.status_code)

    def _one_by_external_2026(
        self, external_task_id: str
    ) -> Generator[Action, Outcome, Task2026]:
        tasks = yield from self.get_tasks([external_task_id], external=True)
        for task in tasks:
            if task.external_id in (None, external_task_id):
                return task
        raise proto.not_found(external_task_id)

    def _one_2026(
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

        return (yield from self._query(request, parse))

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

    # -- wait --------------------------------------------------------------------

    def wait(
        self,
        path: str,
        *,
        task_id: str | None,
        external_task_id: str | None,
        known: AnyTask | None,
        timeout: float,
        poll_interval: float,
        max_interval: float,
    ) -> Generator[Action, Outcome, AnyTask]:
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
                # errors.py names the legacy Task; a Task2026 reads the same way.
                raise WaitTimeoutError(ref, timeout, cast("Task | None", last))
            delay = poll_delay(poll, self.rng, first=poll_interval, cap=max_interval)
            yield Sleep(min(delay, remaining))


def _finished(task: AnyTask) -> AnyTask:
    if task.status is TaskStatus.FAILED:
        # errors.py names the legacy Task; a Task2026 has the same reading names.
        raise TaskFailedError(cast("Task", task))
    return task
