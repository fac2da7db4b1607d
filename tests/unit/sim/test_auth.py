"""Auth: JWT and API key, answered with Kling's 1001-1004."""

from __future__ import annotations

import pytest
from simhelp import ACCESS, SECRET, T2V, config, mint

from klingmon.sim._auth import check_authorization


def _check(header: str | None, now: float = 1_000.0) -> int | None:
    return check_authorization(
        header, access_key=ACCESS, secret_key=SECRET, api_key="key", now=now
    )


@pytest.mark.parametrize("header", [None, "", "   ", "Bearer", "Bearer   "])
def test_missing_or_empty_is_1001(header):
    """A missing or empty Authorization header is 1001."""
    assert _check(header) == 1001


@pytest.mark.parametrize(
    "header", ["Basic abc", "Bearer not-a-jwt", "Bearer a.b.c", "Bearer wrong-key"]
)
def test_malformed_is_1002(header):
    """A header that is neither the API key nor a JWT is 1002."""
    assert _check(header) == 1002


def test_plain_api_key_is_accepted():
    """The plain API key works as a bearer token."""
    assert _check("Bearer key") is None


async def test_jwt_accepted(connect, clock):
    """A fresh JWT from the access/secret key pair is accepted."""
    _, client = await connect(auth=False)
    token = mint(clock)
    response = await client.get(T2V, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json()["code"] == 0


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"secret": "another-secret-that-is-long-enough-000000"}, 1002),
        ({"iss": "someone-else"}, 1002),
        ({"nbf_in": 60}, 1003),
        ({"exp_in": -1}, 1004),
    ],
)
async def test_jwt_rejections(connect, clock, kwargs, code):
    """A bad signature or issuer is 1002, nbf ahead 1003, exp passed 1004 (401)."""
    _, client = await connect(auth=False)
    token = mint(clock, **kwargs)
    response = await client.get(T2V, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    body = response.json()
    assert body["code"] == code
    assert set(body) == {"code", "message", "request_id"}


async def test_token_expires_on_the_virtual_clock(connect, clock):
    """The same token passes, then fails with 1004 once the clock passes exp."""
    _, client = await connect(auth=False)
    headers = {"Authorization": f"Bearer {mint(clock, exp_in=1800)}"}
    assert (await client.get(T2V, headers=headers)).status_code == 200
    clock.advance(1801)
    response = await client.get(T2V, headers=headers)
    assert (response.status_code, response.json()["code"]) == (401, 1004)


async def test_missing_header_over_http(connect):
    """A request without Authorization is 401/1001."""
    _, client = await connect(auth=False)
    response = await client.post(T2V, json={"prompt": "x"})
    assert (response.status_code, response.json()["code"]) == (401, 1001)


async def test_api_key_can_be_disabled(connect):
    """With api_key=None only JWTs are accepted."""
    _, client = await connect(config(api_key=None))
    response = await client.get(T2V)
    assert (response.status_code, response.json()["code"]) == (401, 1002)


def test_secrets_stay_out_of_repr():
    """The config's repr shows neither the secret key nor the API key."""
    text = repr(config(webhook_secret="whsec_c2VjcmV0"))
    assert SECRET not in text
    assert "sim-api-key" not in text
    assert "whsec_" not in text
