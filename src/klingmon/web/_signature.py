"""Standard Webhooks verification of signed callbacks (pure: time is an argument).

Kling's 2026 "Webhook Signature" signs ``{webhook-id}.{webhook-timestamp}.{body}``
with HMAC-SHA256 under the ``whsec_`` secret; several space-separated ``v1,<b64>``
signatures may come during a key rotation, and any match passes. The
``standardwebhooks`` package computes the expected signature; the timestamp check
is done here against the caller's clock so that tests can move time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from standardwebhooks.webhooks import Webhook

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["SignatureError", "SignedDelivery", "sign_headers", "verify_signature"]

#: Standard Webhooks' tolerance between the sender's and our clock.
TOLERANCE = 300.0
_MAX_HEADER = 4096


class SignatureError(ValueError):
    """A signed delivery that does not verify; the message is safe to return."""


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    webhook_id: str
    timestamp: int


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureError(f"missing {name} header")
    if len(value) > _MAX_HEADER:
        raise SignatureError(f"{name} header too long")
    return value


def _expected(secret: str, msg_id: str, timestamp: int, body: bytes) -> bytes:
    when = datetime.fromtimestamp(timestamp, UTC)
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise SignatureError("body is not UTF-8") from exc
    signed = Webhook(secret).sign(msg_id, when, text)
    return base64.b64decode(signed.split(",", 1)[1])


def verify_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> SignedDelivery:
    """Check one delivery; raise :class:`SignatureError` unless it verifies.

    ``headers`` must be case-insensitive or lower-case (Starlette's are).
    """
    msg_id = _header(headers, "webhook-id")
    stamp_text = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        stamp = int(stamp_text)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    if abs(now - stamp) > tolerance:
        raise SignatureError("webhook-timestamp outside the tolerance")
    expected = _expected(secret, msg_id, stamp, body)
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1" or not value:
            continue
        try:
            given = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(given, expected):
            return SignedDelivery(msg_id, stamp)
    raise SignatureError("no matching signature")


def sign_headers(
    secret: str, msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for an outgoing delivery."""
    signature = Webhook(secret).sign(
        msg_id, datetime.fromtimestamp(timestamp, UTC), body.decode()
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
