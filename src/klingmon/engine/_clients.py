"""One Kling client per account: what the engine sends each task's requests with.

Kling counts slots, packs and task ids per account, and one account's key cannot see
another's tasks; so a task's create, its lookups and its polls all go with the client
of the account it was placed on (``TaskRow.account``). The unnamed account is
``default``. Clients are built on first use, so an account never used needs no
credentials to start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from klingmon.errors import ConfigError
from klingmon.policy import DEFAULT_ACCOUNT

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from klingmon.api import AsyncKlingClient

__all__ = ["AccountClients"]


class AccountClients:
    """Clients by account name; each built once, when a task of it is first sent."""

    def __init__(
        self,
        makers: Mapping[str, Callable[[], AsyncKlingClient]],
        *,
        built: Mapping[str, AsyncKlingClient] | None = None,
    ) -> None:
        self._makers = dict(makers)
        self._built: dict[str, AsyncKlingClient] = dict(built or {})
        #: Clients given ready-made are the caller's to close.
        self._given = set(self._built)

    @classmethod
    def of_clients(cls, clients: Mapping[str, AsyncKlingClient]) -> AccountClients:
        """Ready clients by name (the library's ``Monitor(clients=...)``)."""
        return cls({}, built=clients)

    @classmethod
    def single(cls, client: AsyncKlingClient) -> AccountClients:
        """The one client of a single account (``default``)."""
        return cls.of_clients({DEFAULT_ACCOUNT: client})

    @property
    def names(self) -> list[str]:
        """Every account known, sorted."""
        return sorted(self._makers.keys() | self._built.keys())

    @property
    def primary(self) -> str:
        """The account for account-wide asks (packs): ``default`` when known."""
        names = self.names
        return DEFAULT_ACCOUNT if DEFAULT_ACCOUNT in names or not names else names[0]

    def of(self, account: str | None) -> AsyncKlingClient:
        """The client of ``account`` (None: the default)."""
        name = account or DEFAULT_ACCOUNT
        found = self._built.get(name)
        if found is not None:
            return found
        maker = self._makers.get(name)
        if maker is None:
            known = ", ".join(self.names) or "none"
            raise ConfigError(
                f"no account {name!r} is configured (known: {known});"
                f" add [accounts.{name}] to klingmon.toml"
            )
        found = self._built[name] = maker()
        return found

    async def aclose(self) -> None:
        """Close the clients built here (not the ones given)."""
        for name, client in list(self._built.items()):
            if name not in self._given:
                await client.aclose()
                del self._built[name]

    def __repr__(self) -> str:
        return f"AccountClients({self.names!r})"
