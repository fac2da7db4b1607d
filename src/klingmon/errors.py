"""Every error klingmon raises, under one root.

::

    KlingmonError
    ├── ConfigError                 bad settings or credentials missing   (exit 2)
    ├── RequestValidationError      a request breaks a documented limit   (exit 2)
    ├── InputFileError              a submit file has a bad line          (exit 2)
    │   └── BadRowsError            every bad line of a file, in one message
    ├── UsageError                  a command asked for what cannot be    (exit 2)
    │   ├── NotFoundError           no batch or task by that name or id
    │   └── NameTakenError          a batch of that name exists already
    ├── NothingToDoError            nothing to do, and that is fine       (exit 0)
    ├── InterruptedRunError         SIGINT/SIGTERM stopped a long command (exit 130)
    ├── StoreError                  the database cannot be used           (exit 7)
    ├── TransportError              no usable answer: network, timeout    (retryable)
    ├── ApiError                    Kling answered with an error          (exit 4)
    │   ├── AuthError               1000-1004                             (exit 3)
    │   ├── AccountError            1100-1103
    │   ├── InvalidRequestError     1200-1203
    │   │   └── TaskNotFoundError   1203, or a 404 for a task query
    │   ├── PolicyError             1300, 1301, 1304
    │   ├── RateLimitError          1302 and bare 429s                    (retryable)
    │   ├── ConcurrencyLimitError   1303                                  (retryable)
    │   ├── ServerError             5000-5002 and bare 5xx                (retryable)
    │   └── UnexpectedResponseError not JSON, or not Kling's envelope
    ├── DownloadError               a result file could not be fetched    (exit 4)
    │   └── DownloadRefusedError    unsafe URL or redirect, or too big
    ├── HookError                   a shell or webhook hook failed        (retryable)
    ├── TaskFailedError             the task ended as ``failed``          (exit 5)
    ├── WaitTimeoutError            the caller's deadline passed          (exit 6)
    └── SchemaDriftError            Kling sent a status nobody documented

Each class knows its CLI exit code (an :class:`ExitCode`, the one table of them) and
whether trying again may help. No message or repr ever carries a key, token or
signature: errors are built from Kling's answer and our own words only.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING, ClassVar, Self

if TYPE_CHECKING:
    from collections.abc import Sequence

    from klingmon.api import Task

__all__ = [
    "AccountError",
    "ApiError",
    "AuthError",
    "BadRowsError",
    "ConcurrencyLimitError",
    "ConfigError",
    "DownloadError",
    "DownloadRefusedError",
    "ExitCode",
    "HookError",
    "InputFileError",
    "InterruptedRunError",
    "InvalidRequestError",
    "KlingmonError",
    "NameTakenError",
    "NotFoundError",
    "NothingToDoError",
    "PolicyError",
    "RateLimitError",
    "RequestValidationError",
    "SchemaDriftError",
    "ServerError",
    "StoreError",
    "TaskFailedError",
    "TaskNotFoundError",
    "TransportError",
    "UnexpectedResponseError",
    "UsageError",
    "WaitTimeoutError",
    "error_for_code",
    "exit_code_table",
]


class ExitCode(IntEnum):
    """Every exit code of the ``klingmon`` command; docs/errors.md is tested on it."""

    description: str

    def __new__(cls, value: int, description: str) -> Self:
        member = int.__new__(cls, value)
        member._value_ = value
        member.description = description
        return member

    OK = 0, "success, or nothing to do (the message says so)"
    UNEXPECTED = 1, "an unexpected error (a bug: please report it)"
    USAGE = 2, "a usage, configuration or input mistake, an unknown batch or task"
    AUTH = 3, "Kling refused the credentials"
    KLING = 4, "Kling or the network failed (`watch`, `download`: a file is owed)"
    TASKS_FAILED = 5, "tasks ended failed or rejected (`verify`: a file is bad)"
    DEADLINE = 6, "a deadline passed; the tasks are still tracked"
    STORE = 7, "the store cannot be used (cannot be opened or written, or is newer)"
    INTERRUPTED = 130, "interrupted (SIGINT, SIGTERM); `klingmon watch NAME` resumes"


def exit_code_table() -> str:
    """The exit codes as the Markdown table docs/errors.md carries."""
    lines = ["| exit | meaning |", "| --- | --- |"]
    lines += [f"| {code.value} | {code.description} |" for code in ExitCode]
    return "\n".join(lines)


class KlingmonError(Exception):
    """Something klingmon could not do."""

    #: The exit code the CLI uses for this error.
    exit_code: ClassVar[ExitCode] = ExitCode.UNEXPECTED
    #: Whether the same call may succeed if tried again later.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (type(self).__doc__ or type(self).__name__).strip()
        super().__init__(self.message)


class ConfigError(KlingmonError):
    """The configuration is incomplete or invalid."""

    exit_code = ExitCode.USAGE


class RequestValidationError(KlingmonError):
    """The request breaks a limit documented by Kling; nothing was sent."""

    exit_code = ExitCode.USAGE


class InputFileError(KlingmonError):
    """A submit file has a line that cannot become a task; nothing was submitted."""

    exit_code = ExitCode.USAGE

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}: {message}")


class BadRowsError(InputFileError):
    """A submit file has bad lines, all listed at once; nothing was submitted.

    Each problem is ``(line, message)``, ``line`` None for the file as a whole; the
    message shows the first ``limit`` as ``file:line: message``, one a line, so that
    one run finds every mistake.
    """

    def __init__(
        self,
        path: str,
        problems: Sequence[tuple[int | None, str]],
        *,
        limit: int = 20,
    ) -> None:
        self.path = path
        self.problems = tuple(problems)
        self.line = next((n for n, _ in self.problems if n is not None), 0)
        lines = [
            f"{path}:{n}: {text}" if n is not None else f"{path}: {text}"
            for n, text in self.problems[:limit]
        ]
        if len(self.problems) > limit:
            lines.append(f"and {len(self.problems) - limit} more")
        if len(self.problems) > 1:
            rows = len({n for n, _ in self.problems if n is not None})
            where = f" on {rows} line{'s' * (rows != 1)}" if rows else ""
            lines.append(
                f"{path}: {len(self.problems)} problems{where}; nothing stored"
            )
        KlingmonError.__init__(self, "\n".join(lines))


class UsageError(KlingmonError):
    """The command asked for something that cannot be done as asked; nothing changed."""

    exit_code = ExitCode.USAGE


class NotFoundError(UsageError):
    """No batch or task by that name or id."""


class NameTakenError(UsageError):
    """A batch of that name exists already; batch names are unique."""


class NothingToDoError(KlingmonError):
    """There was nothing to do (nothing new to import, nothing failed to retry).

    Not a failure: the CLI prints the message and exits 0. Library callers get it
    because there is no batch to return.
    """

    exit_code = ExitCode.OK


class InterruptedRunError(KlingmonError):
    """SIGINT or SIGTERM stopped a long command after a clean finish; nothing lost."""

    exit_code = ExitCode.INTERRUPTED

    def __init__(self, batch: str | None = None, *, program: str = "klingmon") -> None:
        self.batch = batch
        if batch:
            hint = f"resume with `{program} watch {batch}`"
        else:
            hint = f"`{program} watch NAME` resumes a batch"
        super().__init__(
            f"Interrupted; nothing is lost, the tasks stay tracked: {hint}"
        )


class StoreError(KlingmonError):
    """The task store cannot be opened or written."""

    exit_code = ExitCode.STORE


class TransportError(KlingmonError):
    """No usable answer reached us: connection refused, reset or timed out."""

    exit_code = ExitCode.KLING
    retryable = True


class ApiError(KlingmonError):
    """Kling answered with an error."""

    exit_code = ExitCode.KLING

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.retry_after = retry_after
        detail = f"HTTP {status_code}"
        if code is not None:
            detail += f", code {code}"
        if request_id:
            detail += f", request {request_id}"
        super().__init__(f"{message} ({detail})")
        self.kling_message = message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code}, code={self.code}, "
            f"message={self.kling_message!r}, request_id={self.request_id!r})"
        )


class AuthError(ApiError):
    """Kling refused the credentials (codes 1000-1004)."""

    exit_code = ExitCode.AUTH


class AccountError(ApiError):
    """The account cannot run this: arrears, depleted pack, no access (1100-1103)."""


class InvalidRequestError(ApiError):
    """Kling rejected the request's parameters (1200-1203)."""


class TaskNotFoundError(InvalidRequestError):
    """No task with that id exists for this account."""


class PolicyError(ApiError):
    """A platform policy refused the request: content safety, IP allowlist (1300s)."""


class RateLimitError(ApiError):
    """Requests came too fast (1302, or a 429 without a code)."""

    retryable = True


class ConcurrencyLimitError(ApiError):
    """The account's parallel-task limit is reached (1303)."""

    retryable = True


class ServerError(ApiError):
    """Kling had an internal error, maintenance or backlog (5000-5002, 5xx)."""

    retryable = True


class UnexpectedResponseError(ApiError):
    """The answer was not Kling's JSON envelope."""

    @property
    def is_server_side(self) -> bool:
        return self.status_code >= 500


class DownloadError(KlingmonError):
    """A result file could not be fetched (network, server, size mismatch)."""

    exit_code = ExitCode.KLING
    retryable = True


class DownloadRefusedError(DownloadError):
    """A result file is not fetched on purpose: unsafe URL, redirect, too big."""

    retryable = False


class HookError(KlingmonError):
    """A shell command or webhook hook failed; the outbox will retry it."""

    retryable = True


class TaskFailedError(KlingmonError):
    """The task ended as failed."""

    exit_code = ExitCode.TASKS_FAILED

    def __init__(self, task: Task) -> None:
        self.task = task
        reason = task.task_status_msg or "no reason given"
        super().__init__(f"task {task.task_id} failed: {reason}")


class WaitTimeoutError(KlingmonError):
    """The deadline passed before the task ended; the task is still running at Kling."""

    exit_code = ExitCode.DEADLINE

    def __init__(self, task_ref: str, timeout: float, last: Task | None) -> None:
        self.task_ref = task_ref
        self.timeout = timeout
        #: The last state seen, so that the caller can go on tracking the task.
        self.last = last
        status = last.task_status if last is not None else "not yet seen"
        super().__init__(
            f"task {task_ref} still {status} after {timeout:g}s; it is not lost, "
            "track it again with its id"
        )


class SchemaDriftError(KlingmonError):
    """Kling sent something the documented API does not allow."""


_BY_CODE: dict[int, type[ApiError]] = {
    **dict.fromkeys(range(1000, 1005), AuthError),
    **dict.fromkeys(range(1100, 1104), AccountError),
    **dict.fromkeys(range(1200, 1203), InvalidRequestError),
    1203: TaskNotFoundError,
    1300: PolicyError,
    1301: PolicyError,
    1302: RateLimitError,
    1303: ConcurrencyLimitError,
    1304: PolicyError,
    **dict.fromkeys(range(5000, 5003), ServerError),
}


_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthError,
    403: AccountError,
    404: InvalidRequestError,
    429: RateLimitError,
}


def error_for_code(code: int | None, status_code: int) -> type[ApiError]:
    """Pick the class for a Kling code, falling back on the HTTP status."""
    if code is not None and code in _BY_CODE:
        return _BY_CODE[code]
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, InvalidRequestError)
    if status_code == 403:
        return AccountError
    return InvalidRequestError
