"""Client construction: credentials, environment, reprs and the public surface."""

from __future__ import annotations

import pytest

import klingmon.api
from klingmon.api import (
    DEFAULT_BASE_URL,
    ApiKeyAuth,
    AsyncKlingClient,
    JwtAuth,
    KlingClient,
    _auth,
    _client,
    _models,
    _requests,
    _retry,
)
from klingmon.errors import ConfigError, RequestValidationError

ENV = ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_KEY", "KLING_API_BASE")


@pytest.fixture
def env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_from_env_access_and_secret(env):
    """KLING_ACCESS_KEY + KLING_SECRET_KEY give JWT auth; KLING_API_BASE the URL."""
    env.setenv("KLING_ACCESS_KEY", "ak-env")
    env.setenv("KLING_SECRET_KEY", "sk-env-secret")
    env.setenv("KLING_API_BASE", "http://127.0.0.1:9/")
    with KlingClient.from_env() as client:
        assert isinstance(client.auth, JwtAuth)
        assert client.base_url == "http://127.0.0.1:9"


def test_from_env_api_key_and_overrides(env):
    """KLING_API_KEY gives bearer auth; keyword overrides win."""
    env.setenv("KLING_API_KEY", "api-env-key")
    with KlingClient.from_env(base_url="http://override") as client:
        assert isinstance(client.auth, ApiKeyAuth)
        assert client.base_url == "http://override"
        assert DEFAULT_BASE_URL.startswith("https://")


def test_from_env_missing_names_variables(env):
    """Missing credentials raise ConfigError naming the variables."""
    with pytest.raises(ConfigError) as info:
        KlingClient.from_env()
    for name in ("KLING_ACCESS_KEY", "KLING_SECRET_KEY", "KLING_API_KEY"):
        assert name in str(info.value)
    env.setenv("KLING_ACCESS_KEY", "ak-only")
    with pytest.raises(ConfigError) as info:
        KlingClient.from_env()
    assert "KLING_SECRET_KEY" in str(info.value)


async def test_async_from_env(env):
    """The async client reads the same environment."""
    env.setenv("KLING_API_KEY", "api-env-key")
    async with AsyncKlingClient.from_env() as client:
        assert isinstance(client.auth, ApiKeyAuth)


def test_client_repr_hides_secrets(env):
    """The client's repr shows the base URL, never a key."""
    with KlingClient(access_key="ak-hidden", secret_key="sk-hidden") as client:
        text = repr(client)
    assert "ak-hidden" not in text
    assert "sk-hidden" not in text
    assert DEFAULT_BASE_URL in text


def test_bad_endpoint_refused_locally():
    """Bad list ranges and missing ids raise before any request."""
    with KlingClient(api_key="k") as client:
        with pytest.raises(RequestValidationError):
            client.list("text2video", page_size=501)
        with pytest.raises(RequestValidationError):
            client.get("text2video")
        assert sum(client.requests_sent.values()) == 0


def test_exports_complete():
    """The package re-exports every public name of its modules."""
    internal = {
        "SKEW_TOLERANCE",
        "TOKEN_LIFETIME",
        "TOKEN_RENEW_BEFORE",
        "create_not_created",
        "is_ambiguous_transport",
        "is_transient",
        "parse_retry_after",
        "poll_delay",
        "transport_error",
    }
    exported = set(klingmon.api.__all__)
    for module in (_auth, _client, _models, _requests, _retry):
        assert set(module.__all__) - internal <= exported
    assert all(hasattr(klingmon.api, name) for name in exported)
