"""What the submitter does after a create failed: retry, requeue, look up, reject, halt.

Retrying a create is safe only because every create carries its ``external_task_id``
and the client resolves ambiguous outcomes by looking that id up; so transient
failures keep the same id. A rejection is final and costs nothing (Kling bills only
accepted tasks). Bad credentials halt the engine: every further request would fail.

1201 is Kling's answer both to a bad parameter and to an ``external_task_id`` that
already exists, which is what a create sent again looks like once its first answer
was lost, or once the store was restored from an older copy. The message is not a
documented contract, so every 1201 is looked up by its external id first: a task
found there is adopted (it exists and is billed; rejecting it would lose its result
and invite a second payment), and only a 1201 for which none exists is a rejection.
"""

from __future__ import annotations

from enum import StrEnum

from klingmon.errors import (
    AccountError,
    ApiError,
    AuthError,
    ConcurrencyLimitError,
    ConfigError,
    InputFileError,
    InvalidRequestError,
    PolicyError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
)

__all__ = ["CreateAction", "classify_create_error"]


class CreateAction(StrEnum):
    """The submitter's move after a failed create."""

    #: Transient: back off and send again with the same external id.
    RETRY = "retry"
    #: The account is at its parallel-task limit: back to ``queued``, shrink the slots.
    REQUEUE = "requeue"
    #: Perhaps the task exists (1201): adopt it when its external id finds it,
    #: else reject.
    LOOK_UP = "look_up"
    #: Kling refused this request for good: ``rejected``, with Kling's message.
    REJECT = "reject"
    #: Nothing can succeed (credentials, configuration): stop with a clear error.
    HALT = "halt"


_BY_CODE: dict[int, CreateAction] = {
    **dict.fromkeys(range(1000, 1005), CreateAction.HALT),
    **dict.fromkeys(range(1100, 1104), CreateAction.REJECT),
    **dict.fromkeys(range(1200, 1204), CreateAction.REJECT),
    1201: CreateAction.LOOK_UP,
    1300: CreateAction.REJECT,
    1301: CreateAction.REJECT,
    1302: CreateAction.RETRY,
    1303: CreateAction.REQUEUE,
    1304: CreateAction.REJECT,
    **dict.fromkeys(range(5000, 5003), CreateAction.RETRY),
}

# Checked in order, so subclasses come before their parents.
_BY_CLASS: tuple[tuple[type[BaseException], CreateAction], ...] = (
    (AuthError, CreateAction.HALT),
    (ConcurrencyLimitError, CreateAction.REQUEUE),
    (RateLimitError, CreateAction.RETRY),
    (ServerError, CreateAction.RETRY),
    (UnexpectedResponseError, CreateAction.RETRY),
    (AccountError, CreateAction.REJECT),
    (InvalidRequestError, CreateAction.REJECT),
    (PolicyError, CreateAction.REJECT),
    (TransportError, CreateAction.RETRY),
    (RequestValidationError, CreateAction.REJECT),
    (InputFileError, CreateAction.REJECT),
    (ConfigError, CreateAction.HALT),
)


def classify_create_error(exc: BaseException) -> CreateAction:
    """Map an error raised by a create to the submitter's next move.

    Kling's code decides first, then the error class, then the HTTP status. Anything
    unrecognised halts: a bug must stop the engine loudly, not loop or drop a task.
    """
    if isinstance(exc, ApiError) and exc.code is not None and exc.code in _BY_CODE:
        return _BY_CODE[exc.code]
    for cls, action in _BY_CLASS:
        if isinstance(exc, cls):
            return action
    if isinstance(exc, ApiError):
        if exc.status_code == 401:
            return CreateAction.HALT
        if exc.status_code == 429 or exc.status_code >= 500:
            return CreateAction.RETRY
        return CreateAction.REJECT
    return CreateAction.HALT
