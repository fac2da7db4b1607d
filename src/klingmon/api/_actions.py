"""The I/O actions an operation yields, and the one retrying query every operation uses.

An operation yields :class:`Send` (and receives the ``httpx.Response`` or the
``httpx.TransportError`` it produced) or :class:`Sleep` (and receives None); the
sync and async clients carry them out.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import httpx

from klingmon.api._retry import RetryPolicy, is_transient, transport_error
from klingmon.errors import ApiError, KlingmonError

if TYPE_CHECKING:
    import random
    from collections.abc import Callable, Generator

    from klingmon._clock import Clock

__all__ = ["Action", "Outcome", "Querier", "Send", "Sleep"]

logger = logging.getLogger("klingmon.api._ops")


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


def log_exchange(request: httpx.Request, outcome: Outcome, attempt: int) -> None:
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


def error_extra(error: KlingmonError) -> dict[str, Any]:
    if isinstance(error, ApiError):
        return {
            "status": error.status_code,
            "code": error.code,
            "request_id": error.request_id,
        }
    return {"error": error.message}


class Querier:
    """Sends one query, retrying transient failures with backoff on its clock."""

    def __init__(self, *, retry: RetryPolicy, clock: Clock, rng: random.Random) -> None:
        self.retry = retry
        self.clock = clock
        self.rng = rng

    def run(
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
            log_exchange(request, outcome, attempt)
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
                        **error_extra(error),
                    },
                )
                yield Sleep(delay)
