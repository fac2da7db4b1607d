"""Answer only to Host names that name this server (DNS rebinding stays out).

A web page the user visits can point a name it owns at 127.0.0.1 and read a
tokenless loopback dashboard with the browser's own requests; the one thing it
cannot forge is the ``Host`` header, which carries the attacker's name. So every
request is refused (400) before any route runs unless its Host is a loopback name
(``localhost``, ``127.0.0.0/8``, ``[::1]``, any port), or one of the configured
names: the ``--public-url`` host, ``--allowed-host`` entries (``*.example.com``
matches subdomains, ``*`` turns the check off for a proxy that does it).
``/healthz`` and ``/readyz`` answer any Host: they hold nothing to read, and
load balancers and probes address a server by its IP.

Starlette's ``TrustedHostMiddleware`` matches names only: it cannot accept all of
127.0.0.0/8, hence this small middleware.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from collections.abc import Iterable

    from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["HostCheck", "HostPolicy", "url_host"]

logger = logging.getLogger(__name__)

_HOST = re.compile(r"(\[[0-9a-f:.]+\]|[a-z0-9._~!$&'()*+,;=%-]+)(?::[0-9]{0,5})?")
#: Routes with nothing to read, open to any Host (health probes use the IP).
_OPEN = frozenset({"/healthz", "/readyz"})
_REFUSAL = json.dumps(
    {
        "error": "bad_host",
        "detail": "this server does not answer to that Host (see --allowed-host)",
    }
).encode()


def _name(host: str) -> str:
    """A Host's name part, lower case, IPv6 literals in brackets, no trailing dot."""
    host = host.strip().lower()
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    if host.count(":") > 1:  # a bare IPv6 literal in the configuration
        return f"[{host}]"
    return host.partition(":")[0].removesuffix(".")


def _loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def url_host(url: str) -> str | None:
    """The host a base URL names, as a Host header would carry it (no port)."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    return _name(netloc) or None


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """Which Host header values name this server (pure)."""

    names: frozenset[str] = frozenset()

    @classmethod
    def of(cls, extra: Iterable[str] = ()) -> HostPolicy:
        """Loopback names and ``extra`` (names, IPs, ``*.domain`` or ``*``)."""
        return cls(frozenset(_name(e) for e in extra if e.strip()))

    @property
    def any(self) -> bool:
        return "*" in self.names

    def allows(self, header: str | None) -> bool:
        """Whether a request with this ``Host`` header is meant for us."""
        if self.any:
            return True
        if not header or _HOST.fullmatch(header.lower()) is None:
            return False
        name = _name(header)
        if _loopback(name) or name in self.names:
            return True
        return any(
            n.startswith("*.") and name.endswith(n[1:]) and len(name) > len(n) - 1
            for n in self.names
        )


class HostCheck:
    """ASGI middleware: 400 for a request whose Host is not one of ours."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in {"http", "websocket"} or scope["path"] in _OPEN:
            await self.app(scope, receive, send)
            return
        host = None
        for key, value in scope["headers"]:
            if key == b"host":
                host = value.decode("latin-1")
                break
        if self.policy.allows(host):
            await self.app(scope, receive, send)
            return
        logger.info("web.bad_host", extra={"path": scope.get("path", "")[:100]})
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_REFUSAL)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _REFUSAL})
