"""Standard Webhooks verification of signed callbacks (pure: time is an argument).

Kling's 2026 "Webhook Signature" signs ``{webhook-id}.{webhook-timestamp}.{body}``
with HMAC-SHA256 under the ``whsec_`` secret; during its 7-day rotation several
space-separated ``v1,<b64>`` signatures come, and any match passes. Several secrets
may be configured too (ours rotate on our own schedule): a delivery passes when any
signature matches under any of them. Header names are read case-insensitively.
The ``standardwebhooks`` package computes the expected signature (its ``verify``
reads the system clock, so the timestamp check is done here against the caller's
clock, which lets tests move time).
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
    from collections.abc import Mapping, Sequence

__all__ = [
    "SignatureError",
    "SignedDelivery",
    "parse_secrets",
    "sign_headers",
    "verify_signature",
]

#: Standard Webhooks' tolerance between the sender's and our clock.
TOLERANCE = 300.0
_MAX_HEADER = 4096


class SignatureError(ValueError):
    """A signed delivery that does not verify; the message is safe to return."""


@dataclass(frozen=True, slots=True)
class SignedDelivery:
    webhook_id: str
    timestamp: int


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    """The Standard Webhooks headers under lower-case names, whatever the mapping."""
    wanted = ("webhook-id", "webhook-timestamp", "webhook-signature")
    found = {name: headers[name] for name in wanted if headers.get(name)}
    if len(found) < len(wanted):
        for key, value in headers.items():
            low = key.lower()
            if low in wanted and low not in found:
                found[low] = value
    return found


def parse_secrets(value: str | Sequence[str]) -> tuple[str, ...]:
    """The secrets of a setting: one, or several separated by spaces or commas."""
    items = [value] if isinstance(value, str) else list(value)
    return tuple(
        part for item in items for part in item.replace(",", " ").split() if part
    )


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if not value:
        raise SignatureError(f"missing {name} header")
    if len(value) > _MAX_HEADER:
        raise SignatureError(f"{name} header too long")
    return value


def _expected(secret: str, msg_id: str, timestamp: int, text: str) -> bytes:
    when = datetime.fromtimestamp(timestamp, UTC)
    try:
        signed = Webhook(secret).sign(msg_id, when, text)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError("a configured webhook secret is not valid") from exc
    return base64.b64decode(signed.split(",", 1)[1])


def _given(signatures: str) -> list[bytes]:
    """The decoded ``v1`` signatures of the header; other versions are skipped."""
    given = []
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version != "v1" or not value:
            continue
        try:
            given.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError):
            continue
    return given


def verify_signature(
    secret: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    tolerance: float = TOLERANCE,
) -> SignedDelivery:
    """Check one delivery; raise :class:`SignatureError` unless it verifies.

    ``secret`` is one ``whsec_`` secret or several (any may match); header names
    are matched case-insensitively.
    """
    secrets = parse_secrets(secret)
    if not secrets:
        raise SignatureError("no webhook secret configured")
    headers = _lower(headers)
    msg_id = _header(headers, "webhook-id")
    stamp_text = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        stamp = int(stamp_text)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    if abs(now - stamp) > tolerance:
        raise SignatureError("webhook-timestamp outside the tolerance")
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise SignatureError("body is not UTF-8") from exc
    given = _given(signatures)
    for one in secrets:
        expected = _expected(one, msg_id, stamp, text)
        # Compare against every candidate, so timing says nothing of which matched.
        matches = [hmac.compare_digest(g, expected) for g in given]
        if any(matches):
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
