"""Several simulated accounts on one base URL, told apart by their keys."""

from __future__ import annotations

from typing import TYPE_CHECKING

import httpx
import pytest

from klingmon.api import GenericRequest, KlingClient
from klingmon.errors import AuthError
from klingmon.sim import Faults, SimAccounts, SimConfig, accounts_from_file
from klingmon.testing import AppServer

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

_VIDEO = "/text-to-video/kling-3.0"
_BASE = SimConfig(admin=True, time_scale=1000.0, faults=Faults(fail_rate=0.0))


def _account(name: str, *, time_scale: float = 1000.0, **kw: object) -> SimConfig:
    return SimConfig(
        admin=True,
        time_scale=time_scale,
        faults=Faults(fail_rate=0.0),
        access_key=f"{name}-access",
        secret_key=f"{name}-secret-key-0123456789",
        api_key=f"{name}-api-key",
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def two() -> Iterator[tuple[SimAccounts, str]]:
    accounts = SimAccounts(
        {
            # Its tasks run for minutes: a second one finds the pool full.
            "studio": _account("studio", video_slots=1, time_scale=1.0),
            "agency": _account("agency"),
        }
    )
    server = AppServer(accounts.app)
    server.start()
    try:
        yield accounts, server.url
    finally:
        server.stop()


def _create(url: str, key: str, prompt: str) -> httpx.Response:
    return httpx.post(
        url + _VIDEO,
        json={"prompt": prompt},
        headers={"authorization": f"Bearer {key}"},
    )


def test_each_key_reaches_its_own_account_and_sees_only_its_tasks(two):
    accounts, url = two
    with KlingClient(base_url=url, api_key="studio-api-key") as studio:
        made = studio.submit(GenericRequest(task_path=_VIDEO, payload={"prompt": "a"}))
    # The legacy generation with a JWT from the other account's access/secret pair.
    with KlingClient(
        base_url=url,
        access_key="agency-access",
        secret_key="agency-secret-key-0123456789",
    ) as agency:
        legacy = agency.submit(
            GenericRequest(task_path="/v1/videos/text2video", payload={"prompt": "b"})
        )
    counts = accounts.counters()
    assert list(counts["studio"]["tasks"]) == [made.task_id]
    assert list(counts["agency"]["tasks"]) == [legacy.task_id]
    with KlingClient(base_url=url, api_key="agency-api-key") as agency_key:
        assert agency_key.fetch(_VIDEO, [made.task_id]) == {}  # not its task
    with KlingClient(base_url=url, api_key="studio-api-key") as studio:
        assert set(studio.fetch(_VIDEO, [made.task_id])) == {made.task_id}


def test_pools_are_counted_per_account(two):
    """One account's full pool refuses with 1303; the other's still takes the task."""
    accounts, url = two
    assert _create(url, "studio-api-key", "one").json()["code"] == 0
    refused = _create(url, "studio-api-key", "two")
    assert refused.status_code == 429
    assert refused.json()["code"] == 1303
    assert _create(url, "agency-api-key", "two").json()["code"] == 0
    assert accounts.account("studio").counters()["answers_1303"] == 1
    assert accounts.account("agency").counters()["answers_1303"] == 0


def test_an_unknown_key_is_refused_as_kling_does(two):
    _, url = two
    with (
        KlingClient(base_url=url, api_key="nobodys-key") as client,
        pytest.raises(AuthError),
    ):
        client.submit(GenericRequest(task_path=_VIDEO, payload={"prompt": "a"}))


def test_result_files_and_admin_routes_reach_the_task_s_account(two):
    _, url = two
    with KlingClient(base_url=url, api_key="agency-api-key") as agency:
        made = agency.submit(GenericRequest(task_path=_VIDEO, payload={"prompt": "a"}))
        done = agency.wait_snapshot(_VIDEO, made.task_id, poll_interval=0.05)
    file_url = done.urls[0]
    answer = httpx.get(file_url)  # result files carry no credentials
    assert answer.status_code == 200
    assert answer.content[4:8] == b"ftyp"
    counters = httpx.get(url + "/admin/counters?account=agency").json()
    assert list(counters["tasks"]) == [made.task_id]
    assert httpx.get(url + "/admin/counters").json()["tasks"] == {}  # the first


def test_accounts_need_keys_of_their_own():
    with pytest.raises(ValueError, match="'a' and 'b' share a key"):
        SimAccounts({"a": _account("same"), "b": _account("same")})


def test_an_accounts_file_sets_each_account_over_the_shared_options(tmp_path: Path):
    path = tmp_path / "accounts.toml"
    path.write_text(
        '[accounts.studio]\napi_key = "s-key"\naccess_key = "s"\nvideo_slots = 2\n'
        '[accounts.agency]\napi_key = "a-key"\naccess_key = "a"\n',
        encoding="utf-8",
    )
    found = accounts_from_file(path, _BASE)
    assert list(found) == ["studio", "agency"]
    assert found["studio"].video_slots == 2
    assert found["agency"].video_slots == _BASE.video_slots
    assert found["agency"].time_scale == _BASE.time_scale
    assert "a-key" not in repr(found["agency"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[accounts.x]\nslotz = 3\n", r"accounts\.x\.slotz is not an account setting"),
        ("[accounts.x]\nvideo_slots = 0\n", r"accounts\.x: .*at least 1"),
        ("title = 1\n", r"no \[accounts\.NAME\] table"),
        ("[accounts.x\n", r"accounts\.toml: "),
        (
            '[accounts.x]\napi_key = "k"\n[accounts.y]\napi_key = "k"\n',
            "share a key",
        ),
    ],
)
def test_a_bad_accounts_file_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "accounts.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        accounts_from_file(path, _BASE)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)
