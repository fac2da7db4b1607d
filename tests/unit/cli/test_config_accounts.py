"""Named accounts in klingmon.toml: their keys from the environment or a secrets
file, their base URL and pools; one-line errors naming the file and the field."""

from __future__ import annotations

import pytest

from klingmon.config import AccountSettings, Secret, load_settings
from klingmon.errors import ConfigError


def _write(tmp_path, text: str):
    path = tmp_path / "klingmon.toml"
    path.write_text(text)
    return path


def test_an_account_takes_its_keys_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("KLING_STUDIO_API_KEY", "studio-key")
    monkeypatch.setenv("KLING_AGENCY_ACCESS_KEY", "agency-access")
    monkeypatch.setenv("KLING_AGENCY_SECRET_KEY", "agency-secret")
    path = _write(
        tmp_path,
        '[accounts.studio]\napi_base = "http://127.0.0.1:9"\nslots = 3\n'
        '[accounts.agency]\npools = {"kling-3.0/video" = 2}\n',
    )
    settings = load_settings({}, config=path)
    agency, studio = settings.accounts
    assert studio == AccountSettings(
        name="studio",
        api_base="http://127.0.0.1:9",
        api_key=Secret("studio-key"),
        slots=3,
    )
    assert agency.credentials() == {
        "access_key": "agency-access",
        "secret_key": "agency-secret",
        "api_key": None,
    }
    engine = settings.engine
    assert ("agency:kling-3.0/video", 2) in engine.pools
    assert engine.account_slots == (("studio", 3),)


def test_the_default_account_stays_as_it_was(tmp_path, monkeypatch):
    """No [accounts]: nothing changes; the top-level keys are the default's."""
    monkeypatch.setenv("KLING_API_KEY", "top-key")
    settings = load_settings({}, config=_write(tmp_path, "slots = 4\n"))
    assert settings.accounts == ()
    assert settings.credentials()["api_key"] == "top-key"
    assert settings.engine.account_slots == ()


def test_a_secrets_file_holds_the_keys_and_the_environment_beats_it(
    tmp_path, monkeypatch
):
    secrets = tmp_path / "studio.secrets.toml"
    secrets.write_text(
        'api_key = "from-file"\naccess_key = "a"\nsecret_key = "s"\n'
        'webhook_secret = "whsec_c3R1ZGlv"\n'
    )
    monkeypatch.setenv("KLING_STUDIO_ACCESS_KEY", "from-env")
    path = _write(tmp_path, f'[accounts.studio]\nsecrets_file = "{secrets}"\n')
    (studio,) = load_settings({}, config=path).accounts
    assert studio.api_key == Secret("from-file")
    assert studio.access_key == "from-env"
    assert studio.webhook_secret == Secret("whsec_c3R1ZGlv")


def test_accounts_beside_a_klingmon_table_are_read(tmp_path, monkeypatch):
    monkeypatch.setenv("KLING_STUDIO_API_KEY", "k")
    path = _write(tmp_path, "[klingmon]\nslots = 2\n[accounts.studio]\nslots = 1\n")
    settings = load_settings({}, config=path)
    assert settings.slots == 2
    assert [a.name for a in settings.accounts] == ["studio"]


def test_every_account_s_webhook_secret_is_accepted(tmp_path, monkeypatch):
    monkeypatch.setenv("KLINGMON_WEBHOOK_SECRET", "whsec_dG9w")
    monkeypatch.setenv("KLINGMON_STUDIO_WEBHOOK_SECRET", "whsec_c3R1")
    settings = load_settings({}, config=_write(tmp_path, "[accounts.studio]\n"))
    secrets = settings.webhook_secrets()
    assert secrets is not None
    assert secrets.get().split() == ["whsec_dG9w", "whsec_c3R1"]


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "[accounts.studio]\nslot = 3\n",
            "accounts.studio.slot: unknown account setting (did you mean 'slots'?)",
        ),
        (
            "[accounts.studio]\nslots = 0\n",
            "accounts.studio.slots: must be a whole number, at least 1",
        ),
        (
            '[accounts.studio]\napi_base = "ftp://x"\n',
            "accounts.studio.api_base: must be an http(s) URL",
        ),
        (
            '[accounts.studio]\npools = {"kling-3.0/sound" = 2}\n',
            "accounts.studio.pools: pool 'kling-3.0/sound' must be",
        ),
        (
            '[accounts.studio]\npools = {"x:kling-3.0/video" = 2}\n',
            "name MODEL/PACK only",
        ),
        (
            "[accounts.default]\nslots = 2\n",
            "accounts.default: 'default' is the top-level account",
        ),
        ('[accounts."my-studio"]\n', "accounts.my-studio: account name"),
        (
            '[accounts.studio]\nsecrets_file = "/nonexistent/s.toml"\n',
            "accounts.studio.secrets_file: /nonexistent/s.toml: no such file",
        ),
        ("accounts = 3\n", "accounts: must be a table"),
    ],
)
def test_a_bad_account_table_is_one_line_naming_the_file_and_field(
    tmp_path, table, message
):
    path = _write(tmp_path, table)
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config=path)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert "\n" not in text


def test_a_key_in_the_configuration_file_is_refused_without_showing_it(tmp_path):
    path = _write(tmp_path, '[accounts.studio]\napi_key = "sk-do-not-print"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config=path)
    text = str(caught.value)
    assert "sk-do-not-print" not in text
    assert "KLING_STUDIO_API_KEY" in text
    assert "secrets_file" in text


def test_a_secrets_file_s_mistakes_never_show_a_value(tmp_path):
    secrets = tmp_path / "s.toml"
    secrets.write_text('api_kee = "sk-do-not-print"\nwebhook_secret = "sk-2"\n')
    path = _write(tmp_path, f'[accounts.studio]\nsecrets_file = "{secrets}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings({}, config=path)
    text = str(caught.value)
    assert f"{secrets}: api_kee: unknown secret" in text
    assert "webhook_secret: must start with whsec_" in text
    assert "sk-do-not-print" not in text
    assert "sk-2" not in text


def test_an_account_without_keys_says_which_variables_to_set(tmp_path):
    (studio,) = load_settings(
        {}, config=_write(tmp_path, "[accounts.studio]\n")
    ).accounts
    with pytest.raises(ConfigError, match="KLING_STUDIO_API_KEY"):
        studio.credentials()
    assert "Secret('**********')" in repr(
        AccountSettings(name="x", api_key=Secret("sk-hidden"))
    )
    assert "sk-hidden" not in repr(
        AccountSettings(name="x", api_key=Secret("sk-hidden"))
    )


def test_an_account_s_own_caps_reach_the_engine(tmp_path):
    path = _write(
        tmp_path,
        "daily_units = 100\n[accounts.studio]\ndaily_units = 20\n"
        "monthly_units = 300.5\n[accounts.agency]\n",
    )
    settings = load_settings({}, config=path)
    assert settings.engine.daily_units == 100
    assert settings.engine.account_caps == (("studio", 20, 300.5),)


@pytest.mark.parametrize("value", ["0", "-1", '"ten"', "true", "nan"])
def test_an_account_cap_must_be_a_positive_number(tmp_path, value):
    path = _write(tmp_path, f"[accounts.studio]\ndaily_units = {value}\n")
    with pytest.raises(ConfigError, match=r"accounts\.studio\.daily_units: must be a"):
        load_settings({}, config=path)
