"""Settings: flags beat the environment, which beats klingmon.toml, then defaults."""

from __future__ import annotations

import logging

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
        (
            "slotz = 3\n",
            "klingmon.toml: slotz: unknown setting (did you mean 'slots'?)",
        ),
        ("slots = [\n", "klingmon.toml: "),
        ('slots = "many"\n', "klingmon.toml: slots: Input should be a valid integer"),
        ("slots = true\n", "klingmon.toml: slots: Input should be a valid integer"),
        ("slots = 0\n", "klingmon.toml: slots: must be at least 1"),
        ("rate = -1\n", "klingmon.toml: rate: must be positive"),
        ('download = "yes"\n', "klingmon.toml: download: Input should be a valid bool"),
        (
            "download_dir = 5\n",
            "klingmon.toml: download_dir: Input should be a valid str",
        ),
        ("download_origins = [1]\n", "klingmon.toml: download_origins: Input should"),
        ('api-base = "ftp://x"\n', "klingmon.toml: api_base: must be an http(s) URL"),
        ('public_url = "hooks.example"\n', "klingmon.toml: public_url: must be an"),
        ('webhook_secret = "abc"\n', "klingmon.toml: webhook_secret: must start with"),
        ("rate = nan\n", "klingmon.toml: rate: must be a finite number"),
        ("max_interval = inf\n", "klingmon.toml: max_interval: must be a finite"),
        (
            "min_interval = 50\n",
            (
                "klingmon.toml: min_interval, target_lag, max_interval: need 0 < "
                "min_interval <= target_lag <= max_interval, not 50, 10, 120"
            ),
        ),
    ],
)
def test_a_bad_value_in_the_file_names_the_file_and_the_key(
    tmp_path, monkeypatch, content, message
):
    """A bad setting is one clear line naming the file and the key, exit code 2."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "klingmon.toml").write_text(content)
    with pytest.raises(ConfigError) as info:
        load_settings({})
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_every_bad_value_of_the_file_is_reported_at_once(tmp_path):
    """Three mistakes, three lines, one run."""
    path = tmp_path / "klingmon.toml"
    path.write_text('[klingmon]\nslotz = 3\nrate = 0\ndownload = "no"\n')
    with pytest.raises(ConfigError) as info:
        load_settings({}, config=path)
    assert str(info.value).split("\n") == [
        f"{path}: slotz: unknown setting (did you mean 'slots'?)",
        f"{path}: download: Input should be a valid boolean",
        f"{path}: rate: must be positive",
    ]


def test_a_file_with_a_byte_order_mark_loads(tmp_path):
    """Editors on Windows write a BOM; it is not part of the TOML."""
    path = tmp_path / "klingmon.toml"
    path.write_bytes("\ufeff[klingmon]\nslots = 3\ntarget-lag = 5\n".encode())
    settings = load_settings({}, config=path)
    assert (settings.slots, settings.target_lag) == (3, 5.0)


def test_a_file_that_is_not_utf8_says_so(tmp_path):
    """Not a TOML parse error deep inside, but what is wrong."""
    path = tmp_path / "klingmon.toml"
    path.write_bytes(b'db = "caf\xe9.db"\n')
    with pytest.raises(ConfigError, match=r"klingmon\.toml: not valid UTF-8"):
        load_settings({}, config=path)


@pytest.mark.parametrize(
    "url", ["ftp://x", "x", "http://", "https:///v1", "http://h:99999", "file:///etc"]
)
def test_an_api_base_must_be_an_http_url_with_a_host(tmp_path, url):
    """KLING_API_BASE=ftp://x is a usage error naming the setting, not a late exit 4."""
    with pytest.raises(ConfigError) as info:
        load_settings({"api_base": url}, config=_empty(tmp_path))
    assert str(info.value).startswith(
        "api_base (--api-base, KLING_API_BASE): must be an http(s) URL with a host"
    )
    assert url not in str(info.value).replace("https://api-singapore.klingai.com", "")
    assert info.value.exit_code == 2


def test_a_bad_variable_only_setting_names_the_variable(tmp_path, monkeypatch):
    """KLINGMON_PUBLIC_URL has no global flag: the message names the variable."""
    monkeypatch.setenv("KLINGMON_PUBLIC_URL", "hooks.example.com")
    with pytest.raises(ConfigError, match=r"^KLINGMON_PUBLIC_URL: public_url: must"):
        load_settings({}, config=_empty(tmp_path))


def test_settings_built_directly_are_checked_too():
    """The library's own Settings(...) refuses a wrong type with the same words."""
    with pytest.raises(ConfigError, match=r"^slots \(--slots, KLINGMON_SLOTS\): Input"):
        Settings(slots="many")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="api_base"):
        Settings(api_base="ftp://x")


@pytest.mark.parametrize(
    ("url", "credentials", "warned"),
    [
        ("http://kling.internal:8080", {"api_key": "real-key"}, True),
        ("http://10.0.0.5", {"access_key": "ak", "secret_key": "sk"}, True),
        ("http://kling.internal:8080", {}, False),
        ("https://kling.internal", {"api_key": "real-key"}, False),
        ("http://127.0.0.1:8787", {"api_key": "sim-api-key"}, False),
        ("http://localhost:8787", {"api_key": "sim-api-key"}, False),
        ("http://[::1]:8787", {"api_key": "sim-api-key"}, False),
    ],
)
def test_credentials_over_plain_http_off_loopback_get_one_warning(
    tmp_path, caplog, url, credentials, warned
):
    """One warning line, naming the host and never a key; loopback (the simulator)
    is exempt."""
    caplog.set_level(logging.WARNING, logger="klingmon")
    load_settings({"api_base": url, **credentials}, config=_empty(tmp_path))
    records = [r for r in caplog.records if r.name == "klingmon.config"]
    assert len(records) == int(warned)
    for record in records:
        assert record.getMessage() == "config.plain_http_api_base"
        assert record.host == url.split("//")[1].split(":")[0]
        assert all(v not in caplog.text for v in credentials.values())


def _empty(tmp_path):
    path = tmp_path / "empty.toml"
    path.write_text("")
    return path


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


def test_priority_aging_comes_from_the_file_or_the_variable(tmp_path, monkeypatch):
    """Seconds of waiting per step of aging: the variable beats the file."""
    path = tmp_path / "klingmon.toml"
    path.write_text("[klingmon]\npriority-aging = 120\n")
    assert load_settings({}, config=path).engine.priority_aging == 120.0
    monkeypatch.setenv("KLINGMON_PRIORITY_AGING", "30.5")
    assert load_settings({}, config=path).engine.priority_aging == 30.5
    monkeypatch.setenv("KLINGMON_PRIORITY_AGING", "0")
    with pytest.raises(ConfigError, match=r"^KLINGMON_PRIORITY_AGING: priority_aging"):
        load_settings({}, config=path)
    monkeypatch.setenv("KLINGMON_PRIORITY_AGING", "soon")
    with pytest.raises(ConfigError, match="valid number"):
        load_settings({}, config=path)


def test_spend_settings_from_the_file_and_the_environment(tmp_path, monkeypatch):
    """[prices], approval and the account's caps load; variables beat the file."""
    path = tmp_path / "klingmon.toml"
    path.write_text(
        "[klingmon]\nrequire_approval = true\ndaily_units = 100\n"
        '[klingmon.prices]\n"text2video|kling-v2-6" = 1.5\n'
    )
    monkeypatch.setenv("KLINGMON_MONTHLY_UNITS", "900")
    settings = load_settings(config=path)
    assert settings.require_approval is True
    assert (settings.daily_units, settings.monthly_units) == (100.0, 900.0)
    assert settings.price_overrides == {("/v1/videos/text2video", "kling-v2-6"): 1.5}
    assert settings.engine.daily_units == 100.0


def test_a_bad_price_key_or_cap_names_the_file(tmp_path):
    """A malformed [prices] key and a negative cap are both reported."""
    path = tmp_path / "klingmon.toml"
    path.write_text('[klingmon]\ndaily_units = -1\n[klingmon.prices]\n"|x" = 1\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config=path)
    message = str(caught.value)
    assert "daily_units: must be a positive number of units" in message
    assert f"{path}: prices: price key '|x'" in message
