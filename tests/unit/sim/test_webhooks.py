"""Standard Webhooks signing against the reference test vector (§7)."""

from __future__ import annotations

from klingmon.sim import sign_webhook
from klingmon.sim._webhooks import webhook_headers

VECTOR_SECRET = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="
VECTOR_BODY = (
    b'{"id":"1234567890","status":"succeeded","message":"",'
    b'"create_time":1781080778802,"update_time":1781080794151}'
)


def test_signature_matches_the_reference_vector():
    """The signer reproduces Kling's documented test vector."""
    signature = sign_webhook(VECTOR_SECRET, "9876543210", 1781080794, VECTOR_BODY)
    assert signature == "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4="


def test_headers_carry_id_timestamp_and_signature():
    """webhook_headers gives the three Standard Webhooks headers."""
    headers = webhook_headers(VECTOR_SECRET, "9876543210", 1781080794, VECTOR_BODY)
    assert headers == {
        "webhook-id": "9876543210",
        "webhook-timestamp": "1781080794",
        "webhook-signature": "v1,UsKlJP00XoQyOn410NM9xv34sP+Gl0jnOO9Lcpr7NJ4=",
    }
