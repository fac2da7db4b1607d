"""Settings: flags > environment > ``klingmon.toml`` > defaults.

The CLI passes what came from flags and the environment (Typer reads ``KLINGMON_*``
and ``KLING_*`` for each option); this module fills the rest from the TOML file.
Secrets are wrapped so that no repr, log line or export can show them.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from klingmon.errors import ConfigError

__all__ = ["DEFAULT_API_BASE", "Secret", "Settings", "load_settings"]

DEFAULT_API_BASE = "https://api-singapore.klingai.com"


class Secret:
    """A string that never shows itself in a repr or str."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything a klingmon command may be told; see docs/configuration.md."""

    #: SQLAlchemy URL or file path of the store (``KLINGMON_DB``).
    db: str | None = None
    #: Kling's base URL (``KLING_API_BASE``).
    api_base: str = DEFAULT_API_BASE
    access_key: str | None = None
    secret_key: Secret | None = None
    api_key: Secret | None = None
    #: The account's parallel-task quota (``KLINGMON_SLOTS``).
    slots: int = 5
    #: Requests per second to start from (``KLINGMON_RATE``).
    rate: float = 10.0
    #: Target seconds between a finish and its detection (``KLINGMON_TARGET_LAG``).
    target_lag: float = 10.0
    #: Fewest seconds between two polls of a task (``KLINGMON_MIN_INTERVAL``).
    min_interval: float = 2.0
    #: Most seconds between two polls of a running task (``KLINGMON_MAX_INTERVAL``).
    max_interval: float = 120.0
    #: Public base URL of ``klingmon serve`` (``KLINGMON_PUBLIC_URL``); when set,
    #: every submission carries ``<public_url>/callbacks/kling/<token>``.
    public_url: str | None = None
    #: Kling's ``whsec_`` Webhook Secret (``KLINGMON_WEBHOOK_SECRET``): callbacks
    #: must then carry a valid Standard Webhooks signature.
    webhook_secret: Secret | None = None
    #: Key of the callback-URL tokens (``KLINGMON_CALLBACK_SECRET``); by default one
    #: is generated once and kept in the store.
    callback_secret: Secret | None = None
    #: Fetch results as tasks succeed (``KLINGMON_DOWNLOAD``).
    download: bool = True
    #: Where results land (``KLINGMON_DOWNLOAD_DIR``): a folder or an fsspec URL.
    download_dir: str = "klingmon-downloads"
    #: Extra origins results may come from besides Kling's CDN, e.g. a local simulator
    #: (``KLINGMON_DOWNLOAD_ORIGINS``, separated by spaces).
    download_origins: tuple[str, ...] = ()
    #: Host names ``klingmon serve`` answers to besides loopback and the public
    #: URL's host (``KLINGMON_ALLOWED_HOSTS``, separated by spaces); others get 400.
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ConfigError("slots must be at least 1 (KLINGMON_SLOTS)")
        if self.rate <= 0:
            raise ConfigError("rate must be positive (KLINGMON_RATE)")
        if not 0 < self.min_interval <= self.target_lag <= self.max_interval:
            raise ConfigError(
                "need 0 < min_interval <= target_lag <= max_interval "
                "(KLINGMON_MIN_INTERVAL, KLINGMON_TARGET_LAG, KLINGMON_MAX_INTERVAL)"
            )
        if self.public_url is not None and not self.public_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError("public_url must start with http:// or https://")
        if self.webhook_secret is not None and not self.webhook_secret.get().startswith(
            "whsec_"
        ):
            raise ConfigError("webhook_secret must start with whsec_")

    def credentials(self) -> dict[str, str | None]:
        """Keyword arguments for the Kling client."""
        return {
            "access_key": self.access_key,
            "secret_key": self.secret_key.get() if self.secret_key else None,
            "api_key": self.api_key.get() if self.api_key else None,
        }


_SECRET = frozenset({"secret_key", "api_key", "webhook_secret", "callback_secret"})
#: Settings no global flag carries: read from the environment here (flags > env).
_ENV_ONLY = {
    "public_url": "KLINGMON_PUBLIC_URL",
    "webhook_secret": "KLINGMON_WEBHOOK_SECRET",
    "callback_secret": "KLINGMON_CALLBACK_SECRET",
}


def load_settings(
    given: dict[str, Any] | None = None, *, config: Path | None = None
) -> Settings:
    """Merge flag/env values in ``given`` over ``klingmon.toml`` over defaults."""
    path = config or _config_path()
    from_file = _read_toml(path) if path is not None else {}
    names = {f.name for f in fields(Settings)}
    unknown = sorted(set(from_file) - names)
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}")
    merged: dict[str, Any] = dict(from_file)
    for key, env in _ENV_ONLY.items():
        if os.environ.get(env):
            merged[key] = os.environ[env]
    merged.update({k: v for k, v in (given or {}).items() if v is not None})
    for key in ("download_origins", "allowed_hosts"):
        if isinstance(merged.get(key), (list, str)):
            found = merged[key]
            merged[key] = tuple(found.split() if isinstance(found, str) else found)
    for key in _SECRET & merged.keys():
        if isinstance(merged[key], str):
            merged[key] = Secret(merged[key]) if merged[key] else None
    try:
        return Settings(**merged)
    except TypeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _config_path() -> Path | None:
    env = os.environ.get("KLINGMON_CONFIG")
    if env:
        return Path(env)
    local = Path("klingmon.toml")
    return local if local.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    section = data.get("klingmon", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [klingmon] must be a table")
    return {k.replace("-", "_"): v for k, v in section.items()}
