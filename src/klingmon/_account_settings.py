"""Named accounts: ``[accounts.NAME]`` tables of ``klingmon.toml``.

Each named account has its own credentials, from the environment
(``KLING_<NAME>_API_KEY``, ``KLING_<NAME>_ACCESS_KEY``, ``KLING_<NAME>_SECRET_KEY``,
``KLINGMON_<NAME>_WEBHOOK_SECRET``) or its ``secrets_file`` (a TOML file of those
keys), never the command line nor the configuration file itself (it is often shared
or committed); its base URL, and the size of its pools. The unnamed top-level
account stays ``default``, as before accounts had names.

An account's ``daily_units`` / ``monthly_units`` cap what its own tasks reserve and
are charged per UTC day and month, beside the top-level caps over every account.
"""

from __future__ import annotations

import difflib
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from klingmon._secret import Secret, client_keys
from klingmon.errors import ConfigError
from klingmon.policy import DEFAULT_ACCOUNT, account_problem, parse_pool

__all__ = ["ACCOUNT_SETTINGS", "AccountSettings", "parse_accounts"]

#: What an ``[accounts.NAME]`` table may set.
ACCOUNT_SETTINGS = (
    "api_base",
    "slots",
    "pools",
    "secrets_file",
    "daily_units",
    "monthly_units",
)
#: What a secrets file may hold, and the variables that beat it.
_SECRETS = ("access_key", "secret_key", "api_key", "webhook_secret")


def _variable(name: str, key: str) -> str:
    prefix = "KLINGMON" if key == "webhook_secret" else "KLING"
    return f"{prefix}_{name.upper()}_{key.upper()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountSettings:
    """One named account: where it is, its keys, the size of its pools."""

    name: str
    #: Its base URL; None: the top-level ``api_base``.
    api_base: str | None = None
    access_key: str | None = None
    secret_key: Secret | None = None
    api_key: Secret | None = None
    #: The size of its pools not in ``pools``; None: the top-level ``slots``.
    slots: int | None = None
    #: ``MODEL/PACK`` sizes of its own pools.
    pools: tuple[tuple[str, int], ...] = ()
    #: Its ``whsec_`` Webhook Secret, when its callbacks are signed.
    webhook_secret: Secret | None = None
    #: Caps on the units its own tasks reserve and are charged per UTC day / month.
    daily_units: float | None = None
    monthly_units: float | None = None

    def credentials(self) -> dict[str, str | None]:
        """Keyword arguments for its Kling client; half a key pair is refused."""
        if bool(self.access_key) != bool(self.secret_key):
            missing = "secret_key" if self.access_key else "access_key"
            raise ConfigError(
                f"account {self.name}: {_variable(self.name, missing)} is not set"
                " (an access key needs its secret key)"
            )
        if not (self.api_key or self.access_key):
            raise ConfigError(
                f"account {self.name}: no credentials: set"
                f" {_variable(self.name, 'api_key')} (or"
                f" {_variable(self.name, 'access_key')} and"
                f" {_variable(self.name, 'secret_key')}), or its secrets_file"
            )
        return client_keys(self.access_key, self.secret_key, self.api_key)

    @property
    def pool_sizes(self) -> tuple[tuple[str, int], ...]:
        """Its pools as the engine names them (``NAME:MODEL/PACK``)."""
        return tuple((f"{self.name}:{label}", size) for label, size in self.pools)


def parse_accounts(found: Any, path: Path | str) -> tuple[AccountSettings, ...]:
    """The ``[accounts]`` table of ``path``; every problem in one ConfigError,
    each naming the file and the field (no value of a secret is ever shown)."""
    if not isinstance(found, dict):
        raise ConfigError(f"{path}: accounts: must be a table of [accounts.NAME]")
    problems: list[str] = []
    out: list[AccountSettings] = []
    for name, table in found.items():
        where = f"{path}: accounts.{name}"
        problem = account_problem(name)
        if problem is None and name == DEFAULT_ACCOUNT:
            problem = "'default' is the top-level account: configure it there"
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        if not isinstance(table, dict):
            problems.append(f"{where}: must be a table")
            continue
        account, found_problems = _account(name, table, where)
        problems += found_problems
        if account is not None:
            out.append(account)
    if problems:
        raise ConfigError("\n".join(problems))
    return tuple(sorted(out, key=lambda a: a.name))


def _account(
    name: str, table: dict[str, Any], where: str
) -> tuple[AccountSettings | None, list[str]]:
    table = {k.replace("-", "_"): v for k, v in table.items()}
    problems = _unknown(name, table, where)
    api_base = table.get("api_base")
    if api_base is not None and not _is_http_url(api_base):
        problems.append(f"{where}.api_base: must be an http(s) URL with a host")
    slots = table.get("slots")
    if slots is not None and (
        isinstance(slots, bool) or not isinstance(slots, int) or slots < 1
    ):
        problems.append(f"{where}.slots: must be a whole number, at least 1")
    pools = _pools(table.get("pools", {}), f"{where}.pools", problems)
    caps = {key: table.get(key) for key in ("daily_units", "monthly_units")}
    for key, cap in caps.items():
        if cap is not None and not _positive(cap):
            problems.append(f"{where}.{key}: must be a positive number of units")
    secrets = _keys(name, table.get("secrets_file"), where, problems)
    if problems:
        return None, problems
    return (
        AccountSettings(
            name=name,
            api_base=api_base,
            access_key=secrets.get("access_key"),
            secret_key=_secret(secrets.get("secret_key")),
            api_key=_secret(secrets.get("api_key")),
            slots=slots,
            pools=pools,
            webhook_secret=_secret(secrets.get("webhook_secret")),
            daily_units=caps["daily_units"],
            monthly_units=caps["monthly_units"],
        ),
        [],
    )


def _unknown(name: str, table: dict[str, Any], where: str) -> list[str]:
    """A line per key no account table takes (a key: where it belongs instead)."""
    problems: list[str] = []
    for key in sorted(set(table) - set(ACCOUNT_SETTINGS)):
        if key in _SECRETS:
            problems.append(
                f"{where}.{key}: keys do not belong in the configuration file;"
                f" set {_variable(name, key)} or put it in a secrets_file"
            )
            continue
        close = difflib.get_close_matches(key, ACCOUNT_SETTINGS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(f"{where}.{key}: unknown account setting{hint}")
    return problems


def _keys(name: str, file: Any, where: str, problems: list[str]) -> dict[str, str]:
    """The account's keys: its secrets file, then its variables over it."""
    secrets: dict[str, str] = {}
    if file is not None:
        if not isinstance(file, str) or not file.strip():
            problems.append(f"{where}.secrets_file: must be a file path")
        else:
            secrets = _read_secrets(Path(file).expanduser(), where, problems)
    for key in _SECRETS:
        value = os.environ.get(_variable(name, key))
        if value:
            secrets[key] = value
    webhook = secrets.get("webhook_secret")
    if webhook is not None and not all(
        part.startswith("whsec_") for part in webhook.replace(",", " ").split()
    ):
        problems.append(f"{where}: webhook_secret: must start with whsec_")
    return secrets


def _positive(value: Any) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return number and math.isfinite(value) and value > 0


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


def _pools(found: Any, where: str, problems: list[str]) -> tuple[tuple[str, int], ...]:
    if not isinstance(found, dict):
        problems.append(f"{where}: must be a table of MODEL/PACK = size")
        return ()
    out: list[tuple[str, int]] = []
    for label, size in sorted(found.items()):
        try:
            key = parse_pool(label)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
            continue
        if label.count(":"):
            problems.append(f"{where}: {label!r}: name MODEL/PACK only (its account")
            problems[-1] += " is this table's)"
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            problems.append(f"{where}: {label!r}: size must be at least 1")
            continue
        out.append((f"{key.model}/{key.pack}", size))
    return tuple(out)


def _read_secrets(path: Path, where: str, problems: list[str]) -> dict[str, str]:
    """The keys of a secrets file (no value ever goes into a message)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        problems.append(f"{where}.secrets_file: {path}: no such file")
        return {}
    except (OSError, UnicodeDecodeError):
        problems.append(f"{where}.secrets_file: {path}: cannot read it")
        return {}
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"{path}: {exc}")
        return {}
    out: dict[str, str] = {}
    for key, value in data.items():
        if key not in _SECRETS:
            problems.append(
                f"{path}: {key}: unknown secret (one of {', '.join(_SECRETS)})"
            )
        elif not isinstance(value, str):
            problems.append(f"{path}: {key}: must be a string")
        elif value:
            out[key] = value
    return out


def _is_http_url(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)
