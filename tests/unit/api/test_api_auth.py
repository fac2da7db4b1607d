"""JwtAuth and ApiKeyAuth, driven through their auth flows without sockets."""

from __future__ import annotations

import contextlib
import json

import httpx
import jwt
import pytest

from klingmon.api import ApiKeyAuth, JwtAuth
from klingmon.api._auth import TOKEN_LIFETIME, TOKEN_RENEW_BEFORE

AK, SK = "ak-test-0001", "sk-very-secret-0001"


def _bearer(request: httpx.Request) -> str:
    return request.headers["Authorization"].removeprefix("Bearer ")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_jwt_header_and_claims(clock):
    """The token is HS256/JWT with iss, exp = now+1800 and nbf = now-5, signed by SK."""
    auth = JwtAuth(AK, SK, clock)
    token = auth.token()
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    claims = jwt.decode(
        token,
        SK,
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_nbf": False},
    )
    now = int(clock.now())
    assert claims == {"iss": AK, "exp": now + TOKEN_LIFETIME, "nbf": now - 5}


def test_jwt_cached_until_close_to_expiry(clock):
    """The same token is reused, then re-minted when under five minutes remain."""
    auth = JwtAuth(AK, SK, clock)
    first = auth.token()
    clock.advance(TOKEN_LIFETIME - TOKEN_RENEW_BEFORE - 1)
    assert auth.token() == first
    assert auth.minted == 1
    clock.advance(2)
    assert auth.token() != first
    assert auth.minted == 2


def test_jwt_flow_sets_bearer(clock):
    """The auth flow sends the cached token as a bearer."""
    auth = JwtAuth(AK, SK, clock)
    flow = auth.sync_auth_flow(httpx.Request("GET", "https://x/v1/videos/text2video/1"))
    request = next(flow)
    assert _bearer(request) == auth.token()


def test_jwt_reminted_once_on_expired_401(clock):
    """A 401 with code 1004 re-mints the token and retries exactly once."""
    auth = JwtAuth(AK, SK, clock)
    flow = auth.sync_auth_flow(httpx.Request("GET", "https://x/v1/videos/text2video/1"))
    request = next(flow)
    old = _bearer(request)
    clock.advance(1)  # a different second gives a different token
    expired = httpx.Response(
        401, json={"code": 1004, "message": "expired"}, request=request
    )
    retry = flow.send(expired)
    assert _bearer(retry) != old
    assert auth.minted == 2
    again = httpx.Response(
        401, json={"code": 1004, "message": "expired"}, request=retry
    )
    try:
        flow.send(again)
    except StopIteration:
        pass
    else:  # pragma: no cover - the flow must stop after one retry
        raise AssertionError("retried twice")


def test_jwt_other_401_not_retried(clock):
    """A 401 with another code (bad signature) is returned as is."""
    auth = JwtAuth(AK, SK, clock)
    flow = auth.sync_auth_flow(httpx.Request("GET", "https://x/v1/videos/text2video/1"))
    request = next(flow)
    bad = httpx.Response(
        401, content=json.dumps({"code": 1002}).encode(), request=request
    )
    with contextlib.suppress(StopIteration):
        flow.send(bad)
    assert auth.minted == 1


def test_jwt_renew_skips_when_already_replaced(clock):
    """Two requests rejected with the same token cause a single re-mint."""
    auth = JwtAuth(AK, SK, clock)
    old = auth.token()
    clock.advance(1)
    new = auth.renew(old)
    assert auth.renew(old) == new
    assert auth.minted == 2


def test_reprs_are_masked(clock):
    """No key or token appears in the reprs."""
    auth = JwtAuth(AK, SK, clock)
    token = auth.token()
    for text in (repr(auth), str(auth), repr(ApiKeyAuth("api-key-secret"))):
        assert AK not in text
        assert SK not in text
        assert token not in text
        assert "api-key-secret" not in text


def test_api_key_bearer():
    """ApiKeyAuth sends the key as a bearer."""
    flow = ApiKeyAuth("k-123").sync_auth_flow(httpx.Request("GET", "https://x/"))
    assert next(flow).headers["Authorization"] == "Bearer k-123"
