"""The one place where a front's :class:`Settings` become working parts.

``watch``, ``worker``, ``serve``, ``demo`` and the benchmarks all need the same
things put together the same way: the store the settings name, a Kling client with the
credentials the settings resolved, the engine's settings (with a callback URL when a
public URL is set) and, for ``serve``, the web app over the same store and secret.
:func:`build_runtime` does it once; the fronts only say what differs (a transport, a
clock, an engine knob no flag carries).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import TYPE_CHECKING, Any, Self

from klingmon._clock import Clock, SystemClock
from klingmon.api import AsyncKlingClient
from klingmon.callback_tokens import callback_url_builder, server_secret
from klingmon.engine import Account, AccountClients, EngineSettings, Monitor
from klingmon.errors import ConfigError
from klingmon.policy import DEFAULT_ACCOUNT
from klingmon.store import Store

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from types import TracebackType

    import httpx
    from fastapi import FastAPI

    from klingmon.config import Settings
    from klingmon.web import ReceiverSettings

__all__ = ["Runtime", "build_runtime"]


class Runtime:
    """Store, clients, engine settings and web app of one front, from one Settings.

    The store is opened on first use and closed by :meth:`close` (or the ``with``
    block); each client and monitor handed out is the caller's to close, as the
    engine's runs close theirs.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        engine: Mapping[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._transport = transport
        self._engine_overrides = dict(engine or {})
        self._store: Store | None = None
        self._account: Account | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.settings.db)
        return self._store

    @property
    def account(self) -> Account:
        """The account's packs, one for the process: the monitors, the engine and
        the web app share its cache and its last answer."""
        if self._account is None:
            self._account = Account(clock=self.clock, store=self.store)
        return self._account

    def client(
        self, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncKlingClient:
        """A Kling client on the settings' base URL and credentials (the only path)."""
        keys = self.settings.credentials()
        return AsyncKlingClient(
            access_key=keys["access_key"],
            secret_key=keys["secret_key"],
            api_key=keys["api_key"],
            base_url=self.settings.api_base,
            transport=transport if transport is not None else self._transport,
            clock=self.clock,
        )

    def account_client(
        self, name: str, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> AsyncKlingClient:
        """A client of account ``name`` (``default``: :meth:`client`)."""
        if name == DEFAULT_ACCOUNT:
            return self.client(transport=transport)
        account = self.settings.account(name)
        if account is None:
            known = ", ".join(a.name for a in self.settings.accounts) or "none"
            raise ConfigError(f"no account {name!r} is configured (known: {known})")
        keys = account.credentials()
        return AsyncKlingClient(
            access_key=keys["access_key"],
            secret_key=keys["secret_key"],
            api_key=keys["api_key"],
            base_url=account.api_base or self.settings.api_base,
            transport=transport if transport is not None else self._transport,
            clock=self.clock,
        )

    def account_clients(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        default: AsyncKlingClient | None = None,
    ) -> AccountClients:
        """One client per account, each built when first used: the default one
        (``default`` when given; else when it has keys, or no account is named),
        then every named account."""
        names = [a.name for a in self.settings.accounts]
        if self.settings.has_credentials or not names or default is not None:
            names.insert(0, DEFAULT_ACCOUNT)
        return AccountClients(
            {
                name: functools.partial(self.account_client, name, transport=transport)
                for name in names
            },
            built={DEFAULT_ACCOUNT: default} if default is not None else None,
        )

    def engine_monitor(
        self, *, transport: httpx.AsyncBaseTransport | None = None, confirm: bool = True
    ) -> Monitor:
        """A monitor that will run the engine: every account's client over
        ``transport``. The default account's (or, when only named accounts have
        keys, the first's) is built now, so that a missing key stops the command
        before anything runs; close them with ``Monitor.close_clients``.
        ``confirm``: as the receiver beside it confirms unsigned callbacks."""
        if self.settings.accounts and not self.settings.has_credentials:
            clients = self.account_clients(transport=transport)
            clients.of(clients.primary)
            return self.monitor(clients=clients, confirm=confirm)
        return self.monitor(
            self.client(transport=transport), transport=transport, confirm=confirm
        )

    def server_secret(self) -> bytes:
        """The key of the callback-URL tokens: configured, else kept in the store."""
        return server_secret(self.store, self.settings.callback_secret)

    def callback_url(self) -> Callable[[str], str] | None:
        """Builds each task's ``callback_url`` when a public URL is configured."""
        if not self.settings.public_url:
            return None
        return callback_url_builder(self.settings.public_url, self.server_secret())

    def engine_settings(self, *, confirm: bool = True) -> EngineSettings:
        """The settings' engine group, its callback URL, then the front's overrides.

        With ``confirm`` off (``serve --no-confirm``) no account's final callback
        waits for a confirming request: each counts as signed.
        """
        found = dataclasses.replace(
            self.settings.engine,
            callback_url=self.callback_url(),
        )
        if not confirm:
            signed = self.settings.signed_accounts(confirm=False)
            found = dataclasses.replace(found, signed_accounts=signed)
        if self._engine_overrides:
            found = dataclasses.replace(found, **self._engine_overrides)
        return found

    def monitor(
        self,
        client: AsyncKlingClient | None = None,
        *,
        clients: AccountClients | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        confirm: bool = True,
    ) -> Monitor:
        """A monitor over this store; ``client`` (the default account's) when it
        will talk to Kling. Every named account's client is built when first used
        (``clients``: :meth:`account_clients` over ``transport`` unless given);
        ``confirm`` as :meth:`engine_settings` takes it."""
        if clients is None:
            clients = self.account_clients(default=client, transport=transport)
        return Monitor(
            store=self.store,
            client=client,
            clients=clients,
            settings=self.engine_settings(confirm=confirm),
            clock=self.clock,
            prices=self.settings.price_overrides,
            require_approval=self.settings.require_approval,
            account=self.account,
        )

    def receiver_settings(self, *, confirm: bool = True) -> ReceiverSettings:
        """How callbacks are checked: every account's Webhook Secret, and the
        accounts whose callbacks come unsigned beside them; ``confirm`` as
        ``serve --no-confirm`` sets it."""
        from klingmon.web import ReceiverSettings  # noqa: PLC0415 - FastAPI only for serve

        webhook = self.settings.webhook_secrets()
        return ReceiverSettings(
            webhook_secret=webhook.get() if webhook else None,
            unsigned_accounts=self.settings.unsigned_accounts(),
            confirm=confirm,
        )

    def web_app(
        self, *, settings: ReceiverSettings | None = None, **options: Any
    ) -> FastAPI:
        """``serve``'s app over this store, secret and clock; callbacks checked by
        ``settings`` (default: :meth:`receiver_settings`); ``options`` as
        :func:`klingmon.web.create_app` takes them (hooks, dashboard, ...)."""
        from klingmon.web import create_app  # noqa: PLC0415 - FastAPI only for serve

        return create_app(
            self.store,
            secret=self.server_secret(),
            settings=settings if settings is not None else self.receiver_settings(),
            clock=self.clock,
            account=self.account,
            **options,
        )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Runtime(db={self.settings.db!r}, api_base={self.settings.api_base!r})"


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    engine: Mapping[str, Any] | None = None,
) -> Runtime:
    """The parts every front assembles from ``settings``.

    ``clock`` drives the client, the engine and the web app (a virtual one in the
    benchmarks); ``transport`` is the clients' default (a simulator's in-process one);
    ``engine`` replaces engine settings no flag carries (a seed, a faster schedule).
    """
    return Runtime(settings, clock=clock, transport=transport, engine=engine)
