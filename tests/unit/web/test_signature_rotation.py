"""Kling's 7-day signature rotation and several configured secrets, header case."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from klingmon.web import SignatureError, verify_signature
from klingmon.web._signature import parse_secrets, sign_headers

# Kling's official test vector (reference/kling-api-2026.md, "Webhook signatures").
SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
MSG_ID = "9876543210"
STAMP = 1781080794
BODY = (
    b'{"id":"1234567890","status":"succeeded","message":"",'
    b'"create_time":1781080778802,"update_time":1781080794151}'
)
VECTOR = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="
OLD = "whsec_b2xkc2VjcmV0b2xkc2VjcmV0b2xkc2VjcmV0b2xkMTI="
STRANGER = "whsec_c3RyYW5nZXJzdHJhbmdlcnN0cmFuZ2Vyc3RyYW5nZXI="


def _signed(secret: str, body: bytes = BODY, stamp: int = STAMP) -> str:
    return sign_headers(secret, MSG_ID, stamp, body)["webhook-signature"]


def _headers(signature: str, stamp: int = STAMP) -> dict[str, str]:
    return {
        "webhook-id": MSG_ID,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }


def test_vector_matches_a_plain_hmac():
    """The official vector is HMAC-SHA256 of id.timestamp.body under the key."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    content = f"{MSG_ID}.{STAMP}.".encode() + BODY
    digest = hmac.new(key, content, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(digest).decode() == VECTOR
    assert _signed(SECRET) == VECTOR


@pytest.mark.parametrize(
    "names",
    [
        ("webhook-id", "webhook-timestamp", "webhook-signature"),
        ("Webhook-Id", "Webhook-Timestamp", "Webhook-Signature"),
        ("WEBHOOK-ID", "WEBHOOK-TIMESTAMP", "WEBHOOK-SIGNATURE"),
    ],
)
def test_official_vector_passes_whatever_the_header_case(names):
    """The vector verifies with headers in any case, even in a plain dict."""
    headers = dict(zip(names, (MSG_ID, str(STAMP), VECTOR), strict=True))
    found = verify_signature(SECRET, headers, BODY, now=STAMP)
    assert (found.webhook_id, found.timestamp) == (MSG_ID, STAMP)


@pytest.mark.parametrize("order", ["old-first", "new-first"])
def test_two_signatures_pass_when_either_matches(order):
    """During rotation Kling sends two signatures; either one matching passes."""
    pair = [_signed(OLD), VECTOR]
    if order == "new-first":
        pair.reverse()
    header = " ".join(pair)
    assert verify_signature(SECRET, _headers(header), BODY, now=STAMP)
    assert verify_signature(OLD, _headers(header), BODY, now=STAMP)


def test_two_signatures_neither_matching_are_refused():
    """Two signatures under secrets we do not hold fail."""
    header = f"{_signed(OLD)} {_signed(STRANGER)}"
    with pytest.raises(SignatureError, match="no matching"):
        verify_signature(SECRET, _headers(header), BODY, now=STAMP)


@pytest.mark.parametrize(
    "configured",
    [
        [OLD, SECRET],
        (SECRET, OLD),
        f"{OLD} {SECRET}",
        f"{OLD},{SECRET}",
    ],
)
def test_several_configured_secrets_any_may_match(configured):
    """A delivery signed under any one of the configured secrets passes."""
    assert verify_signature(configured, _headers(VECTOR), BODY, now=STAMP)
    assert verify_signature(configured, _headers(_signed(OLD)), BODY, now=STAMP)


def test_configured_secrets_refuse_a_stranger():
    """A signature under a secret not configured fails, however many are."""
    with pytest.raises(SignatureError):
        verify_signature([OLD, SECRET], _headers(_signed(STRANGER)), BODY, now=STAMP)


@pytest.mark.parametrize("offset", [301, -301, 3600])
def test_stale_or_future_deliveries_are_refused(offset):
    """A timestamp more than five minutes off fails, even if the signature matches."""
    with pytest.raises(SignatureError, match="tolerance"):
        verify_signature(SECRET, _headers(VECTOR), BODY, now=STAMP + offset)


@pytest.mark.parametrize("offset", [300, -300, 0])
def test_deliveries_within_five_minutes_pass(offset):
    """Exactly five minutes off is still inside the window."""
    assert verify_signature(SECRET, _headers(VECTOR), BODY, now=STAMP + offset)


def test_a_wrong_signature_beside_a_bad_one_is_refused():
    """Garbage and a wrong v1 value together do not pass."""
    header = f"v1,@@@ v1,{base64.b64encode(b'x' * 32).decode()} v2,{VECTOR[3:]}"
    with pytest.raises(SignatureError, match="no matching"):
        verify_signature(SECRET, _headers(header), BODY, now=STAMP)


def test_no_configured_secret_is_refused():
    """An empty secret list verifies nothing."""
    with pytest.raises(SignatureError, match="no webhook secret"):
        verify_signature([], _headers(VECTOR), BODY, now=STAMP)


def test_parse_secrets_splits_spaces_and_commas():
    """A setting may hold one secret or several."""
    assert parse_secrets(f" {OLD} ,{SECRET} ") == (OLD, SECRET)
    assert parse_secrets([SECRET]) == (SECRET,)
