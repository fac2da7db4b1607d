"""One Settings: its groups are what the engine and downloads read, every default is
the owning part's, and credentials come by one path."""

from __future__ import annotations

import pytest

from klingmon.api import DEFAULT_BASE_URL
from klingmon.config import Secret, Settings, load_settings
from klingmon.downloads import DownloadSettings
from klingmon.engine import EngineSettings
from klingmon.errors import ConfigError
from klingmon.policy import INTERVAL_RULE, SchedulePolicy, intervals_ordered


def test_the_defaults_are_the_owning_parts_defaults():
    """Nothing given: engine, schedule, downloads and base URL as their owners say."""
    settings = Settings()
    assert settings.engine == EngineSettings(downloads=DownloadSettings())
    assert settings.schedule == SchedulePolicy()
    assert settings.downloads == DownloadSettings()
    assert settings.api_base == DEFAULT_BASE_URL


def test_given_values_reach_the_groups():
    """Slots, rate, intervals and downloads given flat land in the engine's group."""
    settings = Settings(
        slots=3,
        rate=2.0,
        target_lag=5.0,
        min_interval=1.0,
        max_interval=60.0,
        download_dir="out",
        download_origins=("http://127.0.0.1:9",),
    )
    engine = settings.engine
    assert (engine.slots, engine.rate) == (3, 2.0)
    assert (engine.schedule.target_lag, engine.schedule.min_interval) == (5.0, 1.0)
    assert engine.schedule.max_interval == 60.0
    assert engine.downloads == DownloadSettings(
        out="out", allow_origins=("http://127.0.0.1:9",)
    )
    assert Settings(download=False).engine.downloads is None


def test_the_interval_rule_is_the_policys():
    """Settings and SchedulePolicy refuse the same intervals with the same words."""
    assert intervals_ordered(1, 2, 3)
    assert not intervals_ordered(3, 2, 1)
    with pytest.raises(ValueError, match=INTERVAL_RULE):
        SchedulePolicy(min_interval=30.0)
    with pytest.raises(ConfigError, match=INTERVAL_RULE):
        Settings(min_interval=30.0)


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ({"access_key": "ak"}, "KLING_SECRET_KEY"),
        ({"secret_key": Secret("sk")}, "KLING_ACCESS_KEY"),
    ],
)
def test_half_a_key_pair_names_the_missing_half(given, missing):
    """An access key without its secret (or the reverse) is refused, never sent."""
    with pytest.raises(ConfigError, match=f"^{missing} is not set") as info:
        Settings(**given).credentials()
    assert "sk" not in str(info.value).replace("KLING_SECRET_KEY", "")


def test_credentials_come_from_flags_then_the_environment_then_the_file(
    tmp_path, monkeypatch
):
    """The environment beats klingmon.toml; a value given in beats both."""
    path = tmp_path / "klingmon.toml"
    path.write_text(
        'api_key = "from-file"\naccess_key = "ak"\nsecret_key = "sk-file"\n'
    )
    assert load_settings({}, config=path).credentials() == {
        "access_key": "ak",
        "secret_key": "sk-file",
        "api_key": "from-file",
    }
    monkeypatch.setenv("KLING_API_KEY", "from-env")
    monkeypatch.setenv("KLING_SECRET_KEY", "sk-env")
    settings = load_settings({}, config=path)
    assert settings.credentials() == {
        "access_key": "ak",
        "secret_key": "sk-env",
        "api_key": "from-env",
    }
    assert "from-env" not in repr(settings)
    given = load_settings({"api_key": "given"}, config=path)
    assert given.credentials()["api_key"] == "given"


def test_the_price_of_a_query_reaches_the_schedule(tmp_path):
    """request_cost and done_lag from a file, a flag, or flat settings."""
    assert Settings(request_cost=3.0, done_lag=5.0).engine.schedule == SchedulePolicy(
        request_cost=3.0, done_lag=5.0
    )
    (tmp_path / "klingmon.toml").write_text("request_cost = 0.5\n")
    settings = load_settings({"done_lag": 4.0}, config=tmp_path / "klingmon.toml")
    assert (settings.schedule.request_cost, settings.schedule.done_lag) == (0.5, 4.0)


def test_a_query_price_must_be_positive(tmp_path):
    (tmp_path / "klingmon.toml").write_text("request_cost = 0\n")
    with pytest.raises(ConfigError, match="request_cost: must be positive"):
        load_settings(config=tmp_path / "klingmon.toml")
