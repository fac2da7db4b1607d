"""Preflight: before a batch is stored, make sure it can be sent.

A batch stored under a command that then fails is paid for later by whatever sends
it next; so ``submit`` checks, before it stores a single row, that the name is free,
that credentials are there, and (one cheap authenticated list call, ``pageSize=1``)
that the API base answers like Kling and accepts them. Any failure stores nothing.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

import httpx

from klingmon.api import Generation, KlingClient, RetryPolicy, check_auth, generation_of
from klingmon.domain import TaskStatus
from klingmon.errors import (
    AccountError,
    ApiError,
    AuthError,
    ConcurrencyLimitError,
    ConfigError,
    NameTakenError,
    RateLimitError,
    ServerError,
    TransportError,
    UnexpectedResponseError,
    UsageError,
)
from klingmon.policy import DEFAULT_ACCOUNT

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from klingmon.config import Settings
    from klingmon.store import BatchRow, Store

__all__ = [
    "account_base",
    "account_keys",
    "check_generations",
    "check_kling",
    "display_url",
    "ensure_name_free",
    "open_client",
    "taken_batch",
]

#: The list page asked for: every account may list its own text-to-video tasks.
PREFLIGHT_ENDPOINT = "/v1/videos/text2video"
_NOTHING = "nothing was stored"
#: A quick answer or a clear error: a second try for a blip, no long backoff.
_RETRY = RetryPolicy(attempts=2, base=0.25, cap=1.0)
_TIMEOUT = 10.0


def display_url(url: str) -> str:
    """``scheme://host:port/path`` with the port spelled out and no user info."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError):
        return "the configured API base"
    port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme)
    where = f"{parsed.scheme}://{parsed.host}" + (f":{port}" if port else "")
    return where + parsed.path.rstrip("/")


def taken_batch(store: Store, name: str) -> BatchRow | None:
    """The batch that holds ``name`` (by name only: a digit name is no id here)."""
    return next((b for b in store.tasks.batches() if b.name == name), None)


def ensure_name_free(store: Store, name: str, *, option: str = "--batch") -> None:
    """Refuse a taken batch name before anything is stored (names, not ids)."""
    taken = taken_batch(store, name)
    if taken is None:
        return
    quoted = shlex.quote(name)
    waiting = store.tasks.count_by_status(taken.id, statuses=[TaskStatus.QUEUED])
    waiting_n = sum(waiting.values())
    hint = f"choose another name with {option}"
    if waiting_n:
        hint += (
            f"; its {waiting_n} unsent tasks are sent by `klingmon watch {quoted}` "
            f"or dropped by `klingmon cancel {quoted}`"
        )
    raise NameTakenError(f"a batch named {name!r} already exists; {_NOTHING}; {hint}")


def open_client(settings: Settings, account: str = DEFAULT_ACCOUNT) -> KlingClient:
    """A client for the check of ``account``, or ConfigError (exit 2) when its
    credentials are missing."""
    try:
        keys = account_keys(settings, account)
        return KlingClient(
            access_key=keys["access_key"],
            secret_key=keys["secret_key"],
            api_key=keys["api_key"],
            base_url=account_base(settings, account),
            timeout=_TIMEOUT,
            retry=_RETRY,
        )
    except ConfigError as exc:
        raise ConfigError(f"{exc.message}; {_NOTHING}") from exc


def account_base(settings: Settings, name: str) -> str:
    """Where account ``name`` is reached: its own ``api_base``, else the top one."""
    account = None if name == DEFAULT_ACCOUNT else settings.account(name)
    return (account.api_base if account else None) or settings.api_base


def account_keys(settings: Settings, name: str) -> dict[str, str | None]:
    """The credentials of account ``name`` (``default``: the top-level ones);
    an account not configured is a usage error naming the known ones."""
    if name == DEFAULT_ACCOUNT:
        return settings.credentials()
    account = settings.account(name)
    if account is None:
        known = ", ".join([DEFAULT_ACCOUNT, *(a.name for a in settings.accounts)])
        raise UsageError(
            f"no account {name!r} is configured (known: {known}); add"
            f" [accounts.{name}] to klingmon.toml"
        )
    return account.credentials()


def check_generations(
    settings: Settings,
    endpoints: Iterable[str],
    *,
    stored_later: bool = False,
    accounts: Sequence[str] = (DEFAULT_ACCOUNT,),
) -> None:
    """Refuse endpoints the configured credentials cannot reach; nothing is stored.

    The new generation takes an API key only (a JWT from an access/secret pair gets
    401/1002 there), so new-generation rows with only a key pair raise
    :class:`~klingmon.errors.ConfigError` naming ``KLING_API_KEY``. ``stored_later``
    (``--no-preflight`` without ``--watch``): a store with no credentials at all is
    allowed, to be sent once they are set, as for legacy rows. ``accounts``: the
    accounts the rows may be sent on; each must reach them.
    """
    wanted = list(dict.fromkeys(endpoints))
    for name in accounts:
        _check_account(account_keys(settings, name), wanted, stored_later)


def _check_account(
    keys: dict[str, str | None], endpoints: list[str], stored_later: bool
) -> None:
    has_api_key = bool(keys["api_key"])
    has_key_pair = bool(keys["access_key"] and keys["secret_key"])
    if stored_later and not (has_api_key or has_key_pair):
        return
    for endpoint in endpoints:
        if generation_of(endpoint) is not Generation.V2026:
            continue
        try:
            check_auth(endpoint, has_api_key=has_api_key, has_key_pair=has_key_pair)
        except ConfigError as exc:
            raise ConfigError(f"{exc.message}; {_NOTHING}") from exc


def check_kling(settings: Settings, account: str = DEFAULT_ACCOUNT) -> str | None:
    """One authenticated list call with ``account``'s credentials; raise with exit
    3 or 4 if it cannot work.

    Returns a warning to show when Kling accepted the credentials but said the
    account cannot run tasks now (arrears, depleted pack): creates would be refused,
    not billed, so storing is still allowed. A named account is named in each.
    """
    where = display_url(account_base(settings, account))
    if account != DEFAULT_ACCOUNT:
        where = f"{where} (account {account})"
    with open_client(settings, account) as client:
        try:
            client.list(PREFLIGHT_ENDPOINT, page=1, page_size=1)
        except TransportError as exc:
            raise TransportError(
                f"cannot reach Kling at {where} ({exc.message}); {_NOTHING}. "
                "Check --api-base or KLING_API_BASE"
            ) from exc
        except AuthError as exc:
            raise AuthError(
                f"Kling at {where} refused the credentials: {exc.kling_message}; "
                f"{_NOTHING}",
                status_code=exc.status_code,
                code=exc.code,
                request_id=exc.request_id,
            ) from exc
        except ServerError as exc:
            raise ServerError(
                f"Kling at {where} failed: {exc.kling_message}; {_NOTHING}. Try "
                "again later, or store the batch without asking Kling: --no-preflight",
                status_code=exc.status_code,
                code=exc.code,
                request_id=exc.request_id,
            ) from exc
        except ApiError as exc:
            if isinstance(exc, RateLimitError | ConcurrencyLimitError):
                return None  # reachable and not refused: the engine paces itself
            if exc.code is None or isinstance(exc, UnexpectedResponseError):
                # Every Kling account lists text2video: no envelope, wrong server.
                raise UnexpectedResponseError(
                    f"{where} did not answer like Kling: {exc.kling_message}; "
                    f"{_NOTHING}. Check --api-base or KLING_API_BASE",
                    status_code=exc.status_code,
                    code=exc.code,
                    request_id=exc.request_id,
                ) from exc
            if isinstance(exc, AccountError):
                who = "the account" if account == DEFAULT_ACCOUNT else account
                return f"Kling says {who} cannot run tasks now: {exc.message}"
            # Kling's envelope, credentials passed: a refusal of this one query
            # says nothing against the batch.
            return None
    return None
