"""Settings: flags > environment > ``klingmon.toml`` > defaults.

The CLI passes what came from flags and the environment (Typer reads ``KLINGMON_*``
and ``KLING_*`` for each option); this module fills the rest from the TOML file.
Secrets are wrapped so that no repr, log line or export can show them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import ipaddress
import logging
import math
import os
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from pydantic import ConfigDict, TypeAdapter, ValidationError

from klingmon._account_settings import AccountSettings, parse_accounts
from klingmon._secret import Secret, client_keys
from klingmon.api import DEFAULT_BASE_URL
from klingmon.downloads import DownloadSettings
from klingmon.engine import EngineSettings
from klingmon.errors import ConfigError
from klingmon.policy import (
    DEFAULT_ACCOUNT,
    INTERVAL_RULE,
    SchedulePolicy,
    intervals_ordered,
    parse_pool,
    parse_price_key,
)

__all__ = [
    "CREDENTIAL_VARIABLES",
    "AccountSettings",
    "Secret",
    "Settings",
    "load_settings",
]

#: Where credentials come from: the environment (or the file), never a flag, which
#: every local user sees in ``ps``.
CREDENTIAL_VARIABLES = {
    "access_key": "KLING_ACCESS_KEY",
    "secret_key": "KLING_SECRET_KEY",
    "api_key": "KLING_API_KEY",
}

logger = logging.getLogger(__name__)


def _default(owner: type[Any], name: str) -> Any:
    """The default the owning settings give ``name``: each is written there once."""
    return next(f.default for f in fields(owner) if f.name == name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything a klingmon command may be told; see docs/configuration.md."""

    #: SQLAlchemy URL or file path of the store (``KLINGMON_DB``).
    db: str | None = None
    #: Kling's base URL (``KLING_API_BASE``).
    api_base: str = DEFAULT_BASE_URL
    access_key: str | None = None
    secret_key: Secret | None = None
    api_key: Secret | None = None
    #: The size of every concurrency pool not in ``pools`` (``KLINGMON_SLOTS``).
    slots: int = _default(EngineSettings, "slots")
    #: ``[pools]``: slots per pool, ``"kling-3.0/video" = 5`` (``KLINGMON_POOLS``:
    #: ``kling-3.0/video=5 kling-3.0/image=10``); any other pool has ``slots``.
    pools: tuple[tuple[str, int], ...] = ()
    #: Requests per second to start from (``KLINGMON_RATE``).
    rate: float = _default(EngineSettings, "rate")
    #: Target seconds between a finish and its detection (``KLINGMON_TARGET_LAG``).
    target_lag: float = _default(SchedulePolicy, "target_lag")
    #: Fewest seconds between two polls of a task (``KLINGMON_MIN_INTERVAL``).
    min_interval: float = _default(SchedulePolicy, "min_interval")
    #: Most seconds between two polls of a running task (``KLINGMON_MAX_INTERVAL``).
    max_interval: float = _default(SchedulePolicy, "max_interval")
    #: Seconds a priority waits without a slot to count one higher
    #: (``KLINGMON_PRIORITY_AGING``; see ``klingmon.policy.AGING_RULE``).
    priority_aging: float = _default(EngineSettings, "priority_aging")
    #: Slot-seconds one query request is worth while work waits for a slot
    #: (``KLINGMON_REQUEST_COST``): lower polls tighter, at more requests.
    request_cost: float = _default(SchedulePolicy, "request_cost")
    #: Seconds between a batch's last finish and its "done", at most, once
    #: nothing waits for a slot (``KLINGMON_DONE_LAG``).
    done_lag: float = _default(SchedulePolicy, "done_lag")
    #: Public base URL of ``klingmon serve`` (``KLINGMON_PUBLIC_URL``); when set,
    #: every submission carries ``<public_url>/callbacks/kling/<token>``.
    public_url: str | None = None
    #: Kling's ``whsec_`` Webhook Secret (``KLINGMON_WEBHOOK_SECRET``): callbacks
    #: must then carry a valid Standard Webhooks signature. Several secrets,
    #: separated by spaces or commas, are each accepted (Kling's 7-day rotation).
    webhook_secret: Secret | None = None
    #: Key of the callback-URL tokens (``KLINGMON_CALLBACK_SECRET``); by default one
    #: is generated once and kept in the store.
    callback_secret: Secret | None = None
    #: Fetch results as tasks succeed (``KLINGMON_DOWNLOAD``).
    download: bool = True
    #: Where results land (``KLINGMON_DOWNLOAD_DIR``): a folder or an fsspec URL.
    download_dir: str = _default(DownloadSettings, "out")
    #: Extra origins results may come from besides Kling's CDN, e.g. a local simulator
    #: (``KLINGMON_DOWNLOAD_ORIGINS``, separated by spaces).
    download_origins: tuple[str, ...] = ()
    #: Host names ``klingmon serve`` answers to besides loopback and the public
    #: URL's host (``KLINGMON_ALLOWED_HOSTS``, separated by spaces); others get 400.
    allowed_hosts: tuple[str, ...] = ()
    #: Store every batch ``awaiting approval`` with its quote; nothing is sent
    #: before ``klingmon approve`` (``KLINGMON_REQUIRE_APPROVAL``).
    require_approval: bool = False
    #: Caps on the units reserved and charged per UTC day and month, over every
    #: batch (``KLINGMON_DAILY_UNITS``, ``KLINGMON_MONTHLY_UNITS``).
    daily_units: float | None = None
    monthly_units: float | None = None
    #: ``[prices]``: units per item by ``endpoint|model|mode|duration|audio`` (any
    #: tail left off), over the shipped table.
    prices: tuple[tuple[str, float], ...] = ()
    #: ``[accounts.NAME]``: named accounts besides this unnamed ``default`` one,
    #: each with its keys (environment or secrets file), base URL and pools.
    accounts: tuple[AccountSettings, ...] = ()

    def __post_init__(self) -> None:
        values = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name in _HINTS
        }
        found = _type_problems(values) or _range_problems(values)
        if found:
            raise ConfigError("\n".join(_describe(k, m, {}) for k, m in found))

    # -- the groups each part reads: built from the fields, never repeated --------

    @property
    def schedule(self) -> SchedulePolicy:
        """The poll schedule: the intervals and prices given, the other knobs."""
        return SchedulePolicy(
            target_lag=self.target_lag,
            min_interval=self.min_interval,
            max_interval=self.max_interval,
            request_cost=self.request_cost,
            done_lag=self.done_lag,
        )

    @property
    def downloads(self) -> DownloadSettings:
        """Where and from where results are fetched (on success or on command)."""
        return DownloadSettings(
            out=self.download_dir, allow_origins=self.download_origins
        )

    @property
    def engine(self) -> EngineSettings:
        """The engine's settings; a callback URL is added by the runtime (it needs
        the store's secret)."""
        return EngineSettings(
            slots=self.slots,
            pools=self.pools + tuple(p for a in self.accounts for p in a.pool_sizes),
            account_slots=tuple(
                (a.name, a.slots) for a in self.accounts if a.slots is not None
            ),
            rate=self.rate,
            priority_aging=self.priority_aging,
            signed_accounts=self.signed_accounts(),
            schedule=self.schedule,
            downloads=self.downloads if self.download else None,
            daily_units=self.daily_units,
            monthly_units=self.monthly_units,
            account_caps=tuple(
                (a.name, a.daily_units, a.monthly_units)
                for a in self.accounts
                if a.daily_units is not None or a.monthly_units is not None
            ),
        )

    @property
    def price_overrides(self) -> dict[tuple[str, ...], float]:
        """``[prices]`` by parsed key (checked when the settings were made)."""
        return {parse_price_key(k): v for k, v in self.prices}

    def account(self, name: str) -> AccountSettings | None:
        """The named account ``name`` (None: no such account)."""
        return next((a for a in self.accounts if a.name == name), None)

    @property
    def has_credentials(self) -> bool:
        """Whether the unnamed (default) account has keys of its own."""
        return bool(self.api_key or self.access_key or self.secret_key)

    def webhook_secrets(self) -> Secret | None:
        """Every account's Webhook Secret, as the receiver takes several (a
        callback of any account's task is checked against them)."""
        found = [self.webhook_secret, *(a.webhook_secret for a in self.accounts)]
        parts = [s.get() for s in found if s is not None]
        return Secret(" ".join(parts)) if parts else None

    def unsigned_accounts(self) -> frozenset[str]:
        """The accounts with no Webhook Secret when another has one: Kling signs
        per account, so their callbacks come unsigned (hints, as with no secret)."""
        if self.webhook_secrets() is None:
            return frozenset()
        named = {a.name for a in self.accounts if a.webhook_secret is None}
        if self.webhook_secret is None:
            named.add(DEFAULT_ACCOUNT)
        return frozenset(named)

    def signed_accounts(self, *, confirm: bool = True) -> frozenset[str]:
        """The accounts whose final callbacks need no confirming request: every
        one, once any has a Webhook Secret, but :meth:`unsigned_accounts`; every
        one with ``confirm`` off (``serve --no-confirm``)."""
        names = frozenset({DEFAULT_ACCOUNT, *(a.name for a in self.accounts)})
        if not confirm:
            return names
        if self.webhook_secrets() is None:
            return frozenset()
        return names - self.unsigned_accounts()

    def credentials(self) -> dict[str, str | None]:
        """Keyword arguments for the Kling client: the one credentials path.

        Flags never carry credentials; the environment beats ``klingmon.toml``
        (see :func:`load_settings`). Half a key pair is refused here, naming the half
        that is missing.
        """
        if bool(self.access_key) != bool(self.secret_key):
            missing = "secret_key" if self.access_key else "access_key"
            raise ConfigError(
                f"{CREDENTIAL_VARIABLES[missing]} is not set"
                f" ({CREDENTIAL_VARIABLES['access_key']} needs both)"
            )
        return client_keys(self.access_key, self.secret_key, self.api_key)


_SECRET = frozenset({"secret_key", "api_key", "webhook_secret", "callback_secret"})
#: Settings no global flag carries: read from the environment here (flags > env).
_ENV_ONLY = {
    **CREDENTIAL_VARIABLES,
    "public_url": "KLINGMON_PUBLIC_URL",
    "webhook_secret": "KLINGMON_WEBHOOK_SECRET",
    "callback_secret": "KLINGMON_CALLBACK_SECRET",
    "priority_aging": "KLINGMON_PRIORITY_AGING",
    "pools": "KLINGMON_POOLS",
    "require_approval": "KLINGMON_REQUIRE_APPROVAL",
    "daily_units": "KLINGMON_DAILY_UNITS",
    "monthly_units": "KLINGMON_MONTHLY_UNITS",
}
#: Where a value given to :func:`load_settings` came from, for error messages.
_WHERE = {
    "db": "--db, KLINGMON_DB",
    "api_base": "--api-base, KLING_API_BASE",
    "access_key": "KLING_ACCESS_KEY",
    "secret_key": "KLING_SECRET_KEY",
    "api_key": "KLING_API_KEY",
    "slots": "--slots, KLINGMON_SLOTS",
    "pools": "[pools] in klingmon.toml, KLINGMON_POOLS",
    "rate": "--rate, KLINGMON_RATE",
    "target_lag": "--target-lag, KLINGMON_TARGET_LAG",
    "min_interval": "--min-interval, KLINGMON_MIN_INTERVAL",
    "max_interval": "--max-interval, KLINGMON_MAX_INTERVAL",
    "priority_aging": "KLINGMON_PRIORITY_AGING",
    "request_cost": "--request-cost, KLINGMON_REQUEST_COST",
    "done_lag": "--done-lag, KLINGMON_DONE_LAG",
    "download": "--download/--no-download, KLINGMON_DOWNLOAD",
    "download_dir": "--download-dir, KLINGMON_DOWNLOAD_DIR",
    "download_origins": "--download-origin, KLINGMON_DOWNLOAD_ORIGINS",
    "allowed_hosts": "serve --allowed-host, KLINGMON_ALLOWED_HOSTS",
    "public_url": "serve --public-url, KLINGMON_PUBLIC_URL",
    "webhook_secret": "serve --webhook-secret, KLINGMON_WEBHOOK_SECRET",
    "callback_secret": "KLINGMON_CALLBACK_SECRET",
    "require_approval": "KLINGMON_REQUIRE_APPROVAL",
    "daily_units": "KLINGMON_DAILY_UNITS",
    "monthly_units": "KLINGMON_MONTHLY_UNITS",
    "prices": "[prices] in klingmon.toml",
}
#: Every setting but ``accounts`` (its tables are checked by ``parse_accounts``).
_HINTS = {
    k: v
    for k, v in get_type_hints(
        Settings, {"Secret": Secret, "AccountSettings": AccountSettings}
    ).items()
    if k != "accounts"
}
_TYPES = {
    name: TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    for name, hint in _HINTS.items()
}
_DEFAULTS = {
    f.name: f.default for f in fields(Settings) if f.default is not dataclasses.MISSING
}
_INTERVALS = ("min_interval", "target_lag", "max_interval")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def load_settings(
    given: dict[str, Any] | None = None, *, config: Path | None = None
) -> Settings:
    """Merge flag/env values in ``given`` over ``klingmon.toml`` over defaults.

    Every value is checked, and every bad one is named in one ConfigError: a value
    from the file as ``klingmon.toml: slots: Input should be a valid integer``, one
    from a flag or the environment by its flag and variable.
    """
    path = config or _config_path()
    from_file = _read_toml(path) if path is not None else {}
    accounts = (
        parse_accounts(from_file.pop("accounts"), str(path))
        if "accounts" in from_file
        else ()
    )
    # Where each value came from, unless a flag: the file or a variable.
    sources: dict[str, str] = dict.fromkeys(from_file, str(path))
    problems = [
        f"{path}: {key}: unknown setting{_did_you_mean(key)}"
        for key in sorted(set(from_file) - _HINTS.keys())
    ]
    merged: dict[str, Any] = {k: v for k, v in from_file.items() if k in _HINTS}
    for key, env in _ENV_ONLY.items():
        if os.environ.get(env):
            merged[key] = os.environ[env]
            sources[key] = env
    for key, value in (given or {}).items():
        if key not in _HINTS:
            problems.append(f"{key}: unknown setting{_did_you_mean(key)}")
        elif value is not None:
            merged[key] = value
            sources.pop(key, None)
    merged = _normalise(merged)
    mistyped = _type_problems(merged)
    problems += [_describe(k, m, sources) for k, m in mistyped]
    bad = {key for keys, _ in mistyped for key in keys}
    for key in merged.keys() - bad:  # ints become floats where a float is wanted
        merged[key] = _TYPES[key].validate_python(merged[key], strict=True)
    typed = {k: v for k, v in merged.items() if k not in bad}
    problems += [
        _describe(k, m, sources)
        for k, m in _range_problems({**_DEFAULTS, **typed})
        if not bad.intersection(k)
    ]
    if problems:
        raise ConfigError("\n".join(problems))
    settings = Settings(**merged, accounts=accounts)
    _warn_if_plain_http(settings)
    return settings


def _normalise(merged: dict[str, Any]) -> dict[str, Any]:
    """The shapes a file or the environment write, as the fields hold them."""
    out = dict(merged)
    for key in ("download_origins", "allowed_hosts"):
        found = out.get(key)
        if isinstance(found, str):
            out[key] = tuple(found.split())
        elif isinstance(found, list):
            out[key] = tuple(found)
    aging = out.get("priority_aging")
    if isinstance(aging, str):  # from the environment
        out["priority_aging"] = _number(aging)
    for key in ("db", "download_dir"):
        if isinstance(out.get(key), os.PathLike):
            out[key] = os.fspath(out[key])
    out |= _spend_shapes(out)
    if "pools" in out:
        out["pools"] = _pool_pairs(out["pools"])
    for key in _SECRET & out.keys():
        if isinstance(out[key], str):
            out[key] = Secret(out[key]) if out[key] else None
    return out


def _pool_pairs(found: Any) -> Any:
    """``[pools]`` or ``KLINGMON_POOLS`` (``label=size`` words) as sorted pairs;
    anything else as given, for the type check to name."""
    if isinstance(found, dict):
        return tuple(sorted(found.items()))
    if not isinstance(found, str):
        return found
    pairs: list[tuple[str, Any]] = []
    for word in found.replace(",", " ").split():
        label, _, size = word.partition("=")
        pairs.append((label, int(size) if size.strip().isdigit() else size))
    return tuple(sorted(pairs))


def _number(text: str) -> float | str:
    """A number written in a variable; the text itself when it is none (reported)."""
    try:
        return float(text)
    except ValueError:
        return text


def _spend_shapes(merged: dict[str, Any]) -> dict[str, Any]:
    """``[prices]`` as pairs; the variables' strings as a flag and numbers."""
    out: dict[str, Any] = {}
    if isinstance(merged.get("prices"), dict):
        out["prices"] = tuple(sorted(merged["prices"].items()))
    flag = merged.get("require_approval")
    if isinstance(flag, str):
        out["require_approval"] = flag.strip().lower() in {"1", "true", "yes", "on"}
    for key in ("daily_units", "monthly_units"):
        found = merged.get(key)
        if isinstance(found, str):
            with contextlib.suppress(ValueError):  # left a string: the check names it
                out[key] = float(found)
    return out


_Problem = tuple[tuple[str, ...], str]


def _type_problems(values: dict[str, Any]) -> list[_Problem]:
    problems: list[_Problem] = []
    for key, value in values.items():
        try:
            _TYPES[key].validate_python(value, strict=True)
        except ValidationError as exc:  # its messages never carry the value
            problems.append(((key,), exc.errors()[0]["msg"]))
    return problems


def _range_problems(v: dict[str, Any]) -> list[_Problem]:
    """The limits of each value, once its type is right."""
    problems: list[_Problem] = [
        ((key,), "must be a finite number")
        for key in ("rate", "priority_aging", *_INTERVALS, "request_cost", "done_lag")
        if not math.isfinite(v[key])
    ]
    if problems:
        return problems  # nan and inf compare in ways no limit below expects
    if v["slots"] < 1:
        problems.append((("slots",), "must be at least 1"))
    problems.extend(
        ((key,), "must be positive")
        for key in ("rate", "priority_aging", "request_cost", "done_lag")
        if v[key] <= 0
    )
    if not intervals_ordered(*(v[k] for k in _INTERVALS)):
        now = ", ".join(f"{v[k]:g}" for k in _INTERVALS)
        problems.append((_INTERVALS, f"{INTERVAL_RULE}, not {now}"))
    if not _is_http_url(v["api_base"]):
        problems.append(
            (
                ("api_base",),
                f"must be an http(s) URL with a host, like {DEFAULT_BASE_URL}",
            )
        )
    if v["public_url"] is not None and not _is_http_url(v["public_url"]):
        problems.append((("public_url",), "must be an http(s) URL with a host"))
    secret = v["webhook_secret"]
    if secret is not None:
        parts = secret.get().replace(",", " ").split()
        if not parts or not all(part.startswith("whsec_") for part in parts):
            problems.append((("webhook_secret",), "must start with whsec_"))
    problems.extend(
        ((key,), "must be a positive number of units")
        for key in ("daily_units", "monthly_units")
        if v[key] is not None and not (math.isfinite(v[key]) and v[key] > 0)
    )
    problems.extend(_price_problems(v["prices"]))
    problems.extend(_pool_problems(v["pools"]))
    problems.extend(
        ((key,), "must not be empty")
        for key in ("db", "download_dir")
        if v[key] is not None and not v[key].strip()
    )
    return problems


def _price_problems(prices: tuple[tuple[str, float], ...]) -> list[_Problem]:
    problems: list[_Problem] = []
    for key, units in prices:
        try:
            parse_price_key(key)
        except ValueError as exc:
            problems.append((("prices",), str(exc)))
        if not (math.isfinite(units) and units >= 0):
            problems.append((("prices",), f"{key!r}: units must be >= 0"))
    return problems


def _pool_problems(pools: tuple[tuple[str, int], ...]) -> list[_Problem]:
    problems: list[_Problem] = []
    for label, size in pools:
        try:
            parse_pool(label)
        except ValueError as exc:
            problems.append((("pools",), str(exc)))
        if size < 1:
            problems.append((("pools",), f"{label!r}: size must be at least 1"))
    return problems


def _describe(keys: tuple[str, ...], message: str, sources: dict[str, str]) -> str:
    """``klingmon.toml: slots: …``, or the flag and variable a given value came by."""
    names = ", ".join(keys)
    source = next((sources[k] for k in keys if k in sources), None)
    if source is not None:
        return f"{source}: {names}: {message}"
    where = "; ".join(_WHERE[k] for k in keys if k in _WHERE)
    return f"{names} ({where}): {message}" if where else f"{names}: {message}"


def _did_you_mean(key: str) -> str:
    close = difflib.get_close_matches(key, list(_HINTS), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in {"http", "https"} and bool(parts.hostname)


def _warn_if_plain_http(settings: Settings) -> None:
    """Credentials sent unencrypted off this machine get one warning line."""
    bases = [(settings.api_base, bool(settings.api_key or settings.secret_key))]
    bases += [
        (a.api_base or settings.api_base, bool(a.api_key or a.secret_key))
        for a in settings.accounts
    ]
    for base, keyed in bases:
        parts = urlsplit(base)
        host = parts.hostname or ""
        if parts.scheme != "http" or not keyed or _is_loopback(host):
            continue  # loopback: the simulator, nothing leaves the machine
        logger.warning(
            "config.plain_http_api_base",
            extra={"host": host, "hint": "credentials cross the network unencrypted"},
        )
        return


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _config_path() -> Path | None:
    env = os.environ.get("KLINGMON_CONFIG")
    if env:
        return Path(env)
    local = Path("klingmon.toml")
    return local if local.is_file() else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")  # an editor's byte order mark is not TOML
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    section = data.get("klingmon", data)
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [klingmon] must be a table")
    if section is not data and "accounts" in data and "accounts" not in section:
        # ``[accounts.NAME]`` beside ``[klingmon]`` (or ``[klingmon.accounts.NAME]``)
        section = {**section, "accounts": data["accounts"]}
    return {k.replace("-", "_"): v for k, v in section.items()}
