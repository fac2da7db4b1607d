"""Kling's bearer check: an HS256 JWT from the access/secret key pair, or the API key.

Pure: takes the header and the time, returns the 401 code to answer with (or None).
The signature is compared here with :mod:`hmac` rather than through PyJWT's verify,
because PyJWT warns about HMAC keys shorter than 32 bytes and the simulator must
accept whatever key the account was configured with.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

import jwt

__all__ = ["AUTH_MESSAGES", "check_authorization"]

AUTH_MESSAGES: dict[int, str] = {
    1000: "Authentication failed",
    1001: "Authorization is empty",
    1002: "Authorization is invalid",
    1003: "Authorization is not yet valid",
    1004: "Authorization has expired",
}


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def check_authorization(
    header: str | None,
    *,
    access_key: str,
    secret_key: str,
    api_key: str | None,
    now: float,
) -> int | None:
    """The Kling auth error code for this ``Authorization`` header, or None if valid."""
    if header is None or not header.strip():
        return 1001
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        return 1002
    if not token:
        return 1001
    if api_key is not None and hmac.compare_digest(token.encode(), api_key.encode()):
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return 1002
    try:
        header_fields = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        signature = _b64url(parts[2])
    except (jwt.InvalidTokenError, binascii.Error, ValueError):
        return 1002
    if header_fields.get("alg") != "HS256":
        return 1002
    expected = hmac.new(
        secret_key.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256
    ).digest()
    if not hmac.compare_digest(signature, expected):
        return 1002
    iss = claims.get("iss")
    if not isinstance(iss, str) or not hmac.compare_digest(
        iss.encode(), access_key.encode()
    ):
        return 1002
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if not isinstance(exp, int | float) or (
        nbf is not None and not isinstance(nbf, int | float)
    ):
        return 1002
    if nbf is not None and nbf > now:
        return 1003
    if exp <= now:
        return 1004
    return None
