"""Standard Webhooks signing, as Kling's 2026 "Webhook Signature" describes it.

The signed content is ``{id}.{timestamp}.{body}``, HMAC-SHA256 keyed with the
base64-decoded secret (without its ``whsec_`` prefix), sent as ``v1,<base64>``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["sign", "webhook_headers"]


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value for one delivery."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def webhook_headers(
    secret: str | Sequence[str], msg_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one delivery.

    Several secrets (a rotation) give several space-separated ``v1,`` values.
    """
    secrets = (secret,) if isinstance(secret, str) else tuple(secret)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            sign(s, msg_id, timestamp, body) for s in secrets
        ),
    }
