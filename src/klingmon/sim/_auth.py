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

__all__ = ["API_KEY_MESSAGES", "AUTH_MESSAGES", "check_api_key", "check_authorization"]

AUTH_MESSAGES: dict[int, str] = {
    1000: "Authentication failed",
    1001: "Authorization is empty",
    1002: "Authorization is invalid",
    1003: "Authorization is not yet valid",
    1004: "Authorization has expired",
}

#: The new generation's live wording (reference 2026, "Auth and hosts").
API_KEY_MESSAGES: dict[int, str] = {
    1001: "Authorization is empty",
    1002: "api key not found",
}


def _b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _bearer(header: str | None) -> str | int:
    """The bearer token of the header, or the code refusing it."""
    if header is None or not header.strip():
        return 1001
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        return 1002
    return token or 1001


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _check_jwt(
    token: str, *, access_key: str, secret_key: str, now: float
) -> int | None:
    parts = token.split(".")
    if len(parts) != 3:
        return 1002
    try:
        header_fields = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
        signature = _b64url(parts[2])
    except (jwt.InvalidTokenError, binascii.Error, ValueError):
        return 1002
    expected = hmac.new(
        secret_key.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256
    ).digest()
    iss = claims.get("iss")
    if (
        header_fields.get("alg") != "HS256"
        or not hmac.compare_digest(signature, expected)
        or not isinstance(iss, str)
        or not _same(iss, access_key)
    ):
        return 1002
    return _check_times(claims.get("exp"), claims.get("nbf"), now)


def _check_times(exp: object, nbf: object, now: float) -> int | None:
    if not isinstance(exp, int | float) or (
        nbf is not None and not isinstance(nbf, int | float)
    ):
        return 1002
    if isinstance(nbf, int | float) and nbf > now:
        return 1003
    if exp <= now:
        return 1004
    return None


def check_authorization(
    header: str | None,
    *,
    access_key: str,
    secret_key: str,
    api_key: str | None,
    now: float,
) -> int | None:
    """The Kling auth error code for this ``Authorization`` header, or None if valid."""
    token = _bearer(header)
    if isinstance(token, int):
        return token
    if api_key is not None and _same(token, api_key):
        return None
    return _check_jwt(token, access_key=access_key, secret_key=secret_key, now=now)


def check_api_key(header: str | None, *, api_key: str | None) -> int | None:
    """The new generation's check: API keys only; a JWT is an unknown key (1002)."""
    token = _bearer(header)
    if isinstance(token, int):
        return token
    if api_key is not None and _same(token, api_key):
        return None
    return 1002
