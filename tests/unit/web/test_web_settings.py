"""Receiver settings: env and file values, secrets hidden, one server secret."""

from __future__ import annotations

import pytest

from klingmon.callback_tokens import SECRET_META_KEY
from klingmon.config import load_settings
from klingmon.errors import ConfigError
from klingmon.store import Store
from klingmon.web import server_secret

WHSEC = "whsec_dGVzdHNlY3JldHRlc3RzZWNyZXR0ZXN0c2VjcmV0MTI="


def test_receiver_settings_come_from_the_environment(monkeypatch, tmp_path):
    """KLINGMON_PUBLIC_URL and KLINGMON_WEBHOOK_SECRET fill settings; secrets hide."""
    monkeypatch.setenv("KLINGMON_PUBLIC_URL", "https://hooks.example.com")
    monkeypatch.setenv("KLINGMON_WEBHOOK_SECRET", WHSEC)
    settings = load_settings({}, config=_empty(tmp_path))
    assert settings.public_url == "https://hooks.example.com"
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get() == WHSEC
    assert WHSEC not in repr(settings)


def test_flags_win_over_the_environment(monkeypatch, tmp_path):
    """A value given as a flag beats the environment."""
    monkeypatch.setenv("KLINGMON_PUBLIC_URL", "https://env.example.com")
    given = {"public_url": "https://flag.example.com"}
    assert (
        load_settings(given, config=_empty(tmp_path)).public_url == given["public_url"]
    )


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"public_url": "hooks.example.com"}, "public_url"),
        ({"webhook_secret": "not-a-whsec"}, "whsec_"),
    ],
)
def test_bad_values_are_config_errors(tmp_path, given, message):
    """A public URL without a scheme, or a secret without whsec_, is refused."""
    with pytest.raises(ConfigError, match=message):
        load_settings(given, config=_empty(tmp_path))


def test_server_secret_is_made_once_and_kept(tmp_path):
    """The generated secret survives a reopen; a configured one wins."""
    db = str(tmp_path / "s.db")
    with Store.open(db) as store:
        first = server_secret(store)
        assert len(first) == 32
    with Store.open(db) as store:
        assert server_secret(store) == first
        assert store.meta.setdefault(SECRET_META_KEY, "00" * 32) == first.hex()
    settings = load_settings({"callback_secret": "configured"}, config=_empty(tmp_path))
    with Store.open(db) as store:
        assert server_secret(store, settings.callback_secret) == b"configured"


def _empty(tmp_path):
    path = tmp_path / "klingmon.toml"
    path.write_text("")
    return path


def test_allowed_hosts_come_from_the_file_as_a_list_or_a_string(tmp_path):
    """``allowed-hosts`` in klingmon.toml: a list, or names separated by spaces."""
    listed = tmp_path / "listed.toml"
    listed.write_text('[klingmon]\nallowed-hosts = ["km.example.com", "*.corp"]\n')
    spaced = tmp_path / "spaced.toml"
    spaced.write_text('allowed_hosts = "km.example.com  *.corp"\n')
    for path in (listed, spaced):
        found = load_settings({}, config=path).allowed_hosts
        assert found == ("km.example.com", "*.corp")


def test_several_webhook_secrets_are_accepted(tmp_path):
    """Kling's 7-day rotation: both secrets configured, space- or comma-separated."""
    both = "whsec_dGVzdA== whsec_b3RoZXI=,whsec_dGhpcmQ="
    settings = load_settings({"webhook_secret": both}, config=_empty(tmp_path))
    assert settings.webhook_secret is not None
    assert settings.webhook_secret.get() == both
    with pytest.raises(ConfigError, match="whsec_"):
        load_settings(
            {"webhook_secret": "whsec_dGVzdA== oops"}, config=_empty(tmp_path)
        )
