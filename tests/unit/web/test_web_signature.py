"""Standard Webhooks verification: test vector, tolerance, rotation, forgeries."""

from __future__ import annotations

import pytest

from klingmon.sim import sign_webhook
from klingmon.web import SignatureError, sign_headers, verify_signature

SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
OTHER = "whsec_b3RoZXJzZWNyZXRvdGhlcnNlY3JldG90aGVyc2VjcmV0MTI="
BODY = (
    b'{"id":"1234567890","status":"succeeded","message":"",'
    b'"create_time":1781080778802,"update_time":1781080794151}'
)
STAMP = 1781080794
VECTOR = "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="


def _headers(signature: str = VECTOR, stamp: int = STAMP) -> dict[str, str]:
    return {
        "webhook-id": "9876543210",
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }


def test_reference_vector_verifies():
    """Kling's documented test vector passes."""
    found = verify_signature(SECRET, _headers(), BODY, now=STAMP)
    assert (found.webhook_id, found.timestamp) == ("9876543210", STAMP)


def test_simulator_signatures_verify():
    """What the simulator signs, the receiver accepts."""
    signature = sign_webhook(SECRET, "msg_1", STAMP, b'{"a":1}')
    headers = {**_headers(signature), "webhook-id": "msg_1"}
    assert verify_signature(SECRET, headers, b'{"a":1}', now=STAMP + 10)


def test_outgoing_headers_verify():
    """The signer for forwarded events produces headers the verifier accepts."""
    headers = sign_headers(SECRET, "klingmon-event-7", STAMP, b"{}")
    assert verify_signature(SECRET, headers, b"{}", now=STAMP)


def test_rotation_any_of_several_signatures_passes():
    """During a key rotation one matching signature among several suffices."""
    old = sign_webhook(OTHER, "9876543210", STAMP, BODY)
    verify_signature(SECRET, _headers(f"{old} {VECTOR}"), BODY, now=STAMP)


@pytest.mark.parametrize(
    ("headers", "body", "now", "why"),
    [
        (_headers(), BODY + b" ", STAMP, "no matching"),
        (_headers(), BODY, STAMP + 301, "tolerance"),
        (_headers(), BODY, STAMP - 301, "tolerance"),
        (_headers("v1,AAAA"), BODY, STAMP, "no matching"),
        (_headers("v2," + VECTOR[3:]), BODY, STAMP, "no matching"),
        (_headers("garbage"), BODY, STAMP, "no matching"),
        (_headers("v1,@@@"), BODY, STAMP, "no matching"),
        (_headers(stamp=0) | {"webhook-timestamp": "soon"}, BODY, STAMP, "integer"),
        ({"webhook-id": "1"}, BODY, STAMP, "missing"),
        (_headers(), b"\xff\xfe", STAMP, "UTF-8"),
    ],
)
def test_forgeries_and_stale_deliveries_are_refused(headers, body, now, why):
    """Changed bodies, stale stamps, bad or missing signatures all fail."""
    with pytest.raises(SignatureError, match=why):
        verify_signature(SECRET, headers, body, now=now)


def test_signature_under_another_secret_is_refused():
    """A delivery signed with another secret fails."""
    signature = sign_webhook(OTHER, "9876543210", STAMP, BODY)
    with pytest.raises(SignatureError):
        verify_signature(SECRET, _headers(signature), BODY, now=STAMP)
