"""Is Kling answering? The last trouble, for the live view, and when to give up.

The client retries and the engine backs off, both quietly: right for a blip, wrong
when the base URL is a typo or the key is revoked. :class:`Health` hears the outcome
of every HTTP attempt (through :class:`HealthTransport`) and says, from the injected
clock, what is wrong now and whether the time allowed without a single answer is
spent. Nothing here stops anything; the caller decides.
"""

from __future__ import annotations

import os
import re
import urllib.request
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from klingmon._clock import Clock

__all__ = [
    "DEFAULT_GIVE_UP_AFTER",
    "Health",
    "HealthTransport",
    "describe_answer",
    "describe_failure",
    "env_transport",
]

#: Seconds without any answer from Kling, while requests fail, before giving up.
DEFAULT_GIVE_UP_AFTER = 180.0

_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")


def _origin(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}"


def _os_reason(exc: BaseException) -> str | None:
    """The operating system's word for it ("connection refused"), found under the
    wrappers httpx, httpcore and anyio put around it."""
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, OSError) and seen.errno:
            return os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    return None


def describe_failure(exc: Exception, url: httpx.URL) -> str:
    """One line a person can act on: what was tried and how it failed."""
    where = _origin(url)
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {where} in time ({type(exc).__name__})"
    reason = _os_reason(exc) or _ERRNO.sub("", str(exc)).strip().rstrip(".")
    reason = reason or type(exc).__name__
    return f"cannot reach {where} ({reason[:1].lower()}{reason[1:]})"


def describe_answer(status: int, url: httpx.URL) -> str | None:
    """The trouble an answer means, or None when Kling answered for real.

    Any answer below 500 other than 401/403 is Kling speaking (a refusal, a rate
    limit, an unknown task), so it counts as contact; 401/403 means the credentials
    are refused and 5xx that Kling (or a proxy before it) is failing.
    """
    where = _origin(url)
    if status in {401, 403}:
        return f"{where} refused the credentials (HTTP {status})"
    if status >= 500:
        return f"{where} answered HTTP {status}"
    return None


class Health:
    """The outcome of the latest requests, and how long they have been failing."""

    def __init__(self, clock: Clock, *, give_up_after: float | None) -> None:
        self._clock = clock
        self.give_up_after = give_up_after
        #: The latest trouble, kept after a success too (for the closing note).
        self.last_error: str | None = None
        self._failing_since: float | None = None
        self.answers = 0
        self.failures = 0

    def ok(self) -> None:
        """Kling answered: whatever was wrong is over."""
        self.answers += 1
        self._failing_since = None

    def failed(self, error: str) -> None:
        """A request got no usable answer."""
        self.failures += 1
        self.last_error = error
        if self._failing_since is None:
            self._failing_since = self._clock.now()

    def failing_for(self) -> float | None:
        """Seconds since the first failure after the last answer; None if fine."""
        if self._failing_since is None:
            return None
        return max(0.0, self._clock.now() - self._failing_since)

    def trouble(self) -> str | None:
        """What is wrong right now, or None while Kling answers."""
        return None if self._failing_since is None else self.last_error

    def gave_up(self) -> bool:
        """Whether the time allowed without any answer from Kling is spent."""
        failing = self.failing_for()
        return (
            failing is not None
            and self.give_up_after is not None
            and failing >= self.give_up_after
        )

    def left(self) -> float | None:
        """Seconds before giving up, while failing and a limit is set."""
        failing = self.failing_for()
        if failing is None or self.give_up_after is None:
            return None
        return max(0.0, self.give_up_after - failing)


def env_transport(base_url: str | None) -> httpx.AsyncHTTPTransport:
    """The transport httpx would pick for ``base_url``: the environment's proxy
    (``HTTPS_PROXY``, ``NO_PROXY``...) applies, as it does without a wrapper."""
    proxy: str | None = None
    if base_url:
        url = httpx.URL(base_url)
        proxies = urllib.request.getproxies()
        proxy = proxies.get(url.scheme) or proxies.get("all")
        if proxy and urllib.request.proxy_bypass(url.host):
            proxy = None
    return httpx.AsyncHTTPTransport(proxy=proxy)


class HealthTransport(httpx.AsyncBaseTransport):
    """Tells :attr:`health` how every attempt ended; changes nothing it carries.

    ``health`` may be set after the client is built (it needs the engine's clock).
    """

    def __init__(
        self, inner: httpx.AsyncBaseTransport, health: Health | None = None
    ) -> None:
        self.health = health
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            if self.health is not None:
                self.health.failed(describe_failure(exc, request.url))
            raise
        if self.health is not None:
            trouble = describe_answer(response.status_code, request.url)
            if trouble is None:
                self.health.ok()
            else:
                self.health.failed(trouble)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
