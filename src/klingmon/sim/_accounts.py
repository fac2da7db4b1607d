"""Several simulated Kling accounts behind one base URL, told apart by their keys.

Kling is one host for every account: what a request may see and which pools and
packs it draws on follow from its credentials. So here each account is a
:class:`~klingmon.sim.Simulator` of its own (its keys, pools, packs, charges and
counters) on one shared clock, and one ASGI app hands each request to the account
its ``Authorization`` names: an API key is looked up as it is, a JWT by its ``iss``
(the access key; the account then checks the signature itself). A request no
account claims goes to the first, which refuses it as Kling would (401). Result
files carry no credentials: ``/media/<task_id>/...`` goes to the account that holds
the task. ``/admin/*`` takes ``?account=NAME`` (default: the first).
"""

from __future__ import annotations

import dataclasses
import tomllib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import jwt

from klingmon._clock import Clock, SystemClock
from klingmon.sim._simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    import httpx
    from starlette.types import ASGIApp, Receive, Scope, Send

    from klingmon.sim._config import SimConfig

__all__ = ["SimAccounts", "accounts_from_file"]


class SimAccounts:
    """Named simulated accounts, one app; ``account(name)`` is each one's simulator.

    Their seeds are made distinct (the config's seed plus the account's position)
    unless given so, so that their task ids differ as two real accounts' do.
    """

    def __init__(
        self,
        configs: Mapping[str, SimConfig],
        *,
        clock: Clock | None = None,
        callback_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not configs:
            raise ValueError("at least one account is needed")
        _check_keys(configs)
        self.clock: Clock = clock or SystemClock()
        seeds = [c.seed for c in configs.values()]
        if len(set(seeds)) != len(seeds):
            configs = {
                name: dataclasses.replace(config, seed=config.seed + i)
                for i, (name, config) in enumerate(configs.items())
            }
        self.accounts: dict[str, Simulator] = {
            name: Simulator(
                config, clock=self.clock, callback_transport=callback_transport
            )
            for name, config in configs.items()
        }
        self._first = next(iter(self.accounts.values()))
        self._by_api_key = {
            s.config.api_key: s for s in self.accounts.values() if s.config.api_key
        }
        self._by_access_key = {s.config.access_key: s for s in self.accounts.values()}
        self._started = False
        #: The ASGI app: a lifespan for every account, each request to its owner.
        self.app: ASGIApp = _Asgi(self)

    def __repr__(self) -> str:
        return f"SimAccounts({sorted(self.accounts)!r})"

    def account(self, name: str) -> Simulator:
        """The simulator of the account called ``name``."""
        try:
            return self.accounts[name]
        except KeyError:
            raise KeyError(f"no simulated account {name!r}") from None

    def counters(self) -> dict[str, dict[str, Any]]:
        """Each account's counters (see :meth:`Simulator.counters`), by name."""
        return {name: sim.counters() for name, sim in self.accounts.items()}

    @property
    def dispatching(self) -> bool:
        """Whether the accounts' callback dispatchers run."""
        return self._started

    async def start(self) -> None:
        for sim in self.accounts.values():
            await sim.start()
        self._started = True

    async def aclose(self) -> None:
        for sim in self.accounts.values():
            await sim.aclose()
        self._started = False

    def transport(self) -> httpx.AsyncBaseTransport:
        """An in-process transport over every account."""
        from klingmon.sim._transports import InProcessTransport  # noqa: PLC0415

        return InProcessTransport(self)

    def owner(self, scope: Scope) -> Simulator:
        """The account a request is for (see the module)."""
        path: str = scope.get("path", "")
        if path.startswith("/media/"):
            task_id = path.split("/")[2] if path.count("/") >= 2 else ""
            for sim in self.accounts.values():
                if sim.holds(task_id):
                    return sim
            return self._first
        if path.startswith("/admin/"):
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            name = (query.get("account") or [""])[0]
            return self.accounts.get(name, self._first)
        return self._by_credentials(_authorization(scope)) or self._first

    def _by_credentials(self, header: str | None) -> Simulator | None:
        scheme, _, token = (header or "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if token in self._by_api_key:
            return self._by_api_key[token]
        try:
            iss = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt.InvalidTokenError:
            return None
        return self._by_access_key.get(iss) if isinstance(iss, str) else None

    async def _app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI app: a lifespan for every account, each request to its owner."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.owner(scope).app(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


class _Asgi:
    """``SimAccounts.app``: an ASGI 3 callable (uvicorn tells them by ``__call__``)."""

    def __init__(self, accounts: SimAccounts) -> None:
        self._accounts = accounts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._accounts._app(scope, receive, send)  # noqa: SLF001 - its own app


def _authorization(scope: Scope) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == b"authorization":
            return bytes(value).decode("latin-1")
    return None


def _check_keys(configs: Mapping[str, SimConfig]) -> None:
    """Two accounts with one key could not be told apart: refuse it up front."""
    seen: dict[str, str] = {}
    for name, config in configs.items():
        for key in (config.access_key, config.api_key):
            if key is None:
                continue
            if key in seen:
                raise ValueError(
                    f"accounts {seen[key]!r} and {name!r} share a key;"
                    " each account needs its own"
                )
            seen[key] = name


#: What an account's table in an accounts file may set; the rest is shared.
_PER_ACCOUNT = (
    "access_key",
    "secret_key",
    "api_key",
    "slots",
    "video_slots",
    "image_slots",
    "seed",
    "webhook_secret",
    "webhook_secret_previous",
)


def accounts_from_file(path: Path, base: SimConfig) -> dict[str, SimConfig]:
    """The accounts of a TOML file, each ``[accounts.NAME]`` table over ``base``.

    Keys live in the file (never on the command line, where ``ps`` shows them)::

        [accounts.studio]
        api_key = "studio-key"
        video_slots = 5
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None
    tables = data.get("accounts")
    if not isinstance(tables, dict) or not tables:
        raise ValueError(f"{path}: no [accounts.NAME] table")
    found: dict[str, SimConfig] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise ValueError(f"{path}: accounts.{name} must be a table")  # noqa: TRY004 - one error kind for a bad file
        unknown = sorted(set(table) - set(_PER_ACCOUNT))
        if unknown:
            raise ValueError(
                f"{path}: accounts.{name}.{unknown[0]} is not an account setting"
                f" (one of {', '.join(_PER_ACCOUNT)})"
            )
        try:
            found[name] = dataclasses.replace(base, **table)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: accounts.{name}: {exc}") from None
    try:
        _check_keys(found)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    return found
