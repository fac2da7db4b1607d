"""The preflight's one list call against the simulator: each failure has its exit."""

from __future__ import annotations

import pytest

from klingmon.cli._preflight import check_kling, display_url
from klingmon.config import Secret, Settings
from klingmon.errors import (
    AuthError,
    ConfigError,
    ServerError,
    UnexpectedResponseError,
)


def _settings(url: str, key: str = "sim-secret-key") -> Settings:
    return Settings(api_base=url, access_key="sim-access-key", secret_key=Secret(key))


def test_a_sound_account_passes_with_one_list_call(sim_server):
    """Credentials accepted: no error, no warning, one list request, no create."""
    assert check_kling(_settings(sim_server.url)) is None
    routes = sim_server.sim.counters()["requests_by_route"]
    assert routes == {"list": 1}


def test_each_failure_has_its_exit_code(sim_server):
    """Refused: 3; Kling failing: 4; not Kling at all: 4; none leaks the secret."""
    with pytest.raises(AuthError) as refused:
        check_kling(_settings(sim_server.url, key="wrong-secret"))
    sim_server.sim.script("list", status=503, times=2)
    with pytest.raises(ServerError) as failing:
        check_kling(_settings(sim_server.url))
    with pytest.raises(UnexpectedResponseError) as elsewhere:
        check_kling(_settings(f"{sim_server.url}/not-kling"))
    with pytest.raises(ConfigError, match="no Kling credentials"):
        check_kling(Settings(api_base=sim_server.url))
    assert refused.value.exit_code == 3
    assert "refused the credentials" in refused.value.message
    assert failing.value.exit_code == elsewhere.value.exit_code == 4
    assert "--no-preflight" in failing.value.message
    assert "did not answer like Kling" in elsewhere.value.message
    for error in (refused, failing, elsewhere):
        assert "nothing was stored" in error.value.message
        assert "secret" not in error.value.message
    assert sim_server.sim.counters()["requests_by_route"].get("create", 0) == 0


def test_an_account_that_cannot_run_tasks_is_a_warning(sim_server):
    """1102 (pack depleted): creates would be refused unbilled, so only a warning."""
    sim_server.sim.script("list", status=429, code=1102)
    warning = check_kling(_settings(sim_server.url))
    assert warning is not None
    assert "cannot run tasks now" in warning


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787"),
        ("https://api-singapore.klingai.com/", "https://api-singapore.klingai.com:443"),
        ("http://user:pw@example.com/base/", "http://example.com:80/base"),
    ],
)
def test_the_url_is_shown_with_its_port_and_no_user_info(url, shown):
    """An error names where it went, port included, never the user info."""
    assert display_url(url) == shown
