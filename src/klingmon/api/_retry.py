"""Pure retry and polling decisions: how long to wait, and whether to try again.

No I/O and no clock reads here: every function takes the attempt number, the
random source and what the server said, so that both clients and the tests share
exactly one answer to "what now?".
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx

from klingmon.errors import (
    ApiError,
    KlingmonError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
)

if TYPE_CHECKING:
    import random

__all__ = [
    "RetryPolicy",
    "create_not_created",
    "is_ambiguous_transport",
    "is_transient",
    "parse_retry_after",
    "poll_delay",
    "transport_error",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, honouring ``Retry-After``.

    ``attempts`` counts every try, the first included.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base < 0 or self.cap < 0:
            raise ValueError("attempts must be >= 1, base and cap >= 0")

    def ceiling(self, attempt: int) -> float:
        """The largest delay after the ``attempt``-th failure (1-based)."""
        exponent = min(max(attempt - 1, 0), 62)
        return min(self.cap, self.base * 2.0**exponent)

    def backoff(
        self, attempt: int, rng: random.Random, retry_after: float | None = None
    ) -> float:
        """Full jitter in ``[0, ceiling]``; a ``Retry-After`` is a floor, capped."""
        delay = rng.uniform(0.0, self.ceiling(attempt))
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, self.cap))
        return delay


def parse_retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` in seconds, from delta-seconds or an HTTP date, or None."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - now)


def is_transient(error: KlingmonError) -> bool:
    """Whether a query (GET) that failed this way may succeed if sent again.

    A garbled answer (not JSON, not the envelope) is retried unless it came with
    a 4xx: asking again is harmless for a query.
    """
    if isinstance(error, UnexpectedResponseError):
        return not 400 <= error.status_code < 500 or error.status_code == 429
    return error.retryable


def is_ambiguous_transport(exc: httpx.TransportError) -> bool:
    """Whether the request may have reached the server before this failure.

    Only a failure to connect proves that nothing was sent.
    """
    return not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)


def create_not_created(error: ApiError) -> bool:
    """Kling said, in its own envelope, that the create failed on its side."""
    return (
        isinstance(error, ServerError)
        and error.code is not None
        and 5000 <= error.code <= 5002
    )


def poll_delay(
    poll: int,
    rng: random.Random,
    *,
    first: float = 2.0,
    factor: float = 1.5,
    cap: float = 30.0,
) -> float:
    """The pause after the ``poll``-th query of a wait (1-based), ±20 % jitter.

    Grows ``first * factor^(poll-1)`` up to ``cap``; the jitter never leaves
    ``[0.8 * base, min(cap, 1.2 * base)]``.
    """
    exponent = min(max(poll - 1, 0), 200)
    base = min(cap, first * factor**exponent)
    return min(cap, base * rng.uniform(0.8, 1.2))


def transport_error(exc: httpx.TransportError) -> TransportError:
    """Our error for httpx's, with no URL credentials or headers in it."""
    return TransportError(
        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    )
