"""Settings: flags beat the environment, which beats klingmon.toml, then defaults."""

from __future__ import annotations

import pytest

from klingmon.config import Secret, Settings, load_settings
from klingmon.errors import ConfigError


def test_defaults_without_a_file(tmp_path, monkeypatch):
    """With nothing given, the documented defaults apply."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings({})
    assert settings == Settings()
    assert settings.api_base == "https://api-singapore.klingai.com"


def test_given_values_beat_the_file(tmp_path):
    """A value passed in (flag or environment) wins over the TOML file."""
    path = tmp_path / "klingmon.toml"
    path.write_text('[klingmon]\nslots = 20\ndb = "file.db"\ntarget-lag = 5\n')
    settings = load_settings({"slots": 7, "db": None}, config=path)
    assert settings.slots == 7
    assert settings.db == "file.db"
    assert settings.target_lag == 5


def test_the_file_is_found_in_the_working_directory(tmp_path, monkeypatch):
    """klingmon.toml in the current folder is read without being named."""
    (tmp_path / "klingmon.toml").write_text("slots = 9\n")
    monkeypatch.chdir(tmp_path)
    assert load_settings({}).slots == 9


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("slotz = 3\n", "unknown setting 'slotz'"),
        ("slots = [\n", "klingmon.toml"),
        ("slots = 0\n", "KLINGMON_SLOTS"),
        ("min_interval = 50\n", "KLINGMON_MIN_INTERVAL"),
    ],
)
def test_bad_configuration_names_the_file_or_variable(tmp_path, content, message):
    """A bad setting is one clear error naming where it came from."""
    path = tmp_path / "klingmon.toml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_settings({}, config=path)


def test_secrets_never_show_in_a_repr(tmp_path, monkeypatch):
    """The secret key and API key are masked in every repr."""
    monkeypatch.chdir(tmp_path)
    settings = load_settings(
        {"secret_key": "s3cret-value", "api_key": "api-value", "access_key": "ak"}
    )
    assert isinstance(settings.secret_key, Secret)
    assert "s3cret-value" not in repr(settings)
    assert "api-value" not in repr(settings)
    assert settings.credentials()["secret_key"] == "s3cret-value"
