"""Helpers for the simulator's unit tests (imported by name: no package here)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jwt

from klingmon.sim import Faults, SimConfig

if TYPE_CHECKING:
    import httpx

    from klingmon.testing import VirtualClock

# PyJWT warns (an error under our filterwarnings) about HMAC keys under 32 bytes.
SECRET = "sim-secret-key-long-enough-for-hs256-0123"
ACCESS = "sim-access-key"
API_KEY = "sim-api-key"
T2V = "/v1/videos/text2video"


def mint(
    clock: VirtualClock,
    *,
    iss: str = ACCESS,
    secret: str = SECRET,
    exp_in: float = 1800,
    nbf_in: float = -5,
) -> str:
    now = clock.now()
    claims = {"iss": iss, "exp": int(now + exp_in), "nbf": int(now + nbf_in)}
    return jwt.encode(claims, secret, algorithm="HS256", headers={"typ": "JWT"})


def config(**overrides: Any) -> SimConfig:
    """A test account: long secret, no random failures unless asked."""
    return SimConfig(
        **{"secret_key": SECRET, "faults": Faults(fail_rate=0.0), **overrides}
    )


async def create(
    client: httpx.AsyncClient, path: str = T2V, **fields: Any
) -> dict[str, Any]:
    """POST a create and return its task (``data``), asserting success."""
    body = {"prompt": "a red fox running through snow", **fields}
    response = await client.post(path, json=body)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data
