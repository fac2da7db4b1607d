"""Each client operation written once, as a generator of I/O actions.

An operation yields :class:`Send` (and receives the ``httpx.Response`` or the
``httpx.TransportError`` it produced) or :class:`Sleep` (and receives None). The
sync client drives it with ``httpx.Client`` and ``clock.sleep``, the async client
with ``httpx.AsyncClient`` and ``await clock.asleep``; retry, ambiguity resolution
and the wait loop exist only here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, cast

import httpx

from klingmon.api import _protocol as proto
from klingmon.api import _protocol2026 as proto26
from klingmon.api._actions import (
    Action,
    Outcome,
    Querier,
    Send,
    Sleep,
    error_extra,
    log_exchange,
)
from klingmon.api._endpoints import Generation, generation_of
from klingmon.api._ops2026 import TASKS_BATCH_SIZE, TaskQueries
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
    from klingmon.api._tasks import AnyTask

__all__ = ["TASKS_BATCH_SIZE", "Action", "Operations", "Outcome", "Send", "Sleep"]

logger = logging.getLogger(__name__)

#: Consecutive sightings of an undocumented status before a wait gives up.
DRIFT_SIGHTINGS = 3


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
        self.timeout = timeout
        self.retry = retry
        self.clock = clock
        self.rng = rng
        self._querier = Querier(retry=retry, clock=clock, rng=rng)
        #: The new generation's batched and filtered queries.
        self.tasks2026 = TaskQueries(
            base_url=self.base_url,
            timeout=timeout,
            clock=clock,
            querier=self._querier,
            batch_size=tasks_batch_size,
        )

    # -- queries ---------------------------------------------------------------

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
                return (yield from self.tasks2026.one(task_id, deadline))
            assert external_task_id is not None  # noqa: S101 - checked above
            return (yield from self.tasks2026.one_by_external(external_task_id))
        if task_id is not None:
            request = proto.build_get(self.base_url, path, task_id, self.timeout)
            return (
                yield from self._querier.run(
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
        task = yield from self._querier.run(request, parse, deadline=deadline)
        if task is not None:
            return task
        # The server answered a list page without our task: ask by path instead.
        request = proto.build_get(self.base_url, path, external_task_id, self.timeout)
        task = yield from self._querier.run(
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

        return (yield from self._querier.run(request, parse))

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
            log_exchange(http_request, outcome, attempt)
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
                    **error_extra(error),
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
                return (yield from self.tasks2026.one_by_external(ext))
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
                    extra={"task": ref, "poll": poll, **error_extra(error)},
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
