"""Callback-URL tokens: an HMAC of the task's ``external_task_id`` (pure).

Kling's legacy callbacks carry no signature, so the URL itself is the credential:
``<public_url>/callbacks/kling/<token>`` where the token is HMAC-SHA256 of the
task's ``external_task_id`` under a server secret. A token proves the sender knew
the URL we gave Kling for *that* task; it is useless for any other task.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from klingmon.config import Secret
    from klingmon.store import Store

__all__ = [
    "CALLBACK_PATH",
    "SECRET_META_KEY",
    "callback_token",
    "callback_url_builder",
    "server_secret",
    "token_matches",
]

CALLBACK_PATH = "/callbacks/kling/"
#: Where the generated server secret is kept (hex); never logged or exported.
SECRET_META_KEY = "callback_secret"  # noqa: S105 - a key name, not a secret
_MAX_TOKEN = 128


def _digest(secret: bytes, external_task_id: str) -> bytes:
    return hmac.new(secret, external_task_id.encode(), hashlib.sha256).digest()


def callback_token(secret: bytes, external_task_id: str) -> str:
    """The URL-safe base64 (unpadded) HMAC-SHA256 of ``external_task_id``."""
    raw = _digest(secret, external_task_id)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode(token: str) -> bytes | None:
    if not token or len(token) > _MAX_TOKEN or not token.isascii():
        return None
    if len(token) == 64:
        try:
            return bytes.fromhex(token)
        except ValueError:
            pass
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None


def token_matches(secret: bytes, external_task_id: str, token: str) -> bool:
    """Whether ``token`` (base64url or hex) is this task's, in constant time."""
    given = _decode(token)
    expected = _digest(secret, external_task_id)
    return given is not None and hmac.compare_digest(given, expected)


def callback_url_builder(public_url: str, secret: bytes) -> Callable[[str], str]:
    """``external_task_id -> callback_url`` for :class:`EngineSettings`."""
    base = public_url.rstrip("/") + CALLBACK_PATH

    def build(external_task_id: str) -> str:
        return base + callback_token(secret, external_task_id)

    return build


def server_secret(store: Store, configured: Secret | None = None) -> bytes:
    """The configured secret, else the one kept in the store (made on first use).

    ``meta.setdefault`` makes two processes starting at once agree on one secret.
    """
    if configured is not None:
        return configured.get().encode()
    found = store.meta.get(SECRET_META_KEY)
    if found is None:
        found = store.meta.setdefault(SECRET_META_KEY, secrets.token_hex(32))
    return bytes.fromhex(found)
