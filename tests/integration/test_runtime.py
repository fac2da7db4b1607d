"""build_runtime: the parts every front uses, assembled from one Settings."""

from __future__ import annotations

import asyncio

import pytest

from klingmon.api import GenericRequest
from klingmon.config import AccountSettings, Secret, Settings
from klingmon.domain import TaskStatus
from klingmon.errors import ConfigError, UsageError
from klingmon.runtime import build_runtime
from klingmon.web import CALLBACK_PATH, callback_token


def _settings(tmp_path, url: str) -> Settings:
    return Settings(
        db=str(tmp_path / "rt.db"),
        api_base=url,
        access_key="sim-access-key",
        secret_key=Secret("sim-secret-key"),
        slots=2,
        target_lag=0.2,
        min_interval=0.05,
        max_interval=1.0,
        download_dir=str(tmp_path / "out"),
        download_origins=(url,),
    )


def test_a_runtime_carries_a_batch_from_submit_to_files(sim_server, tmp_path):
    """Store, client and engine settings from Settings alone: every task succeeds
    against the simulator and every result is downloaded."""
    runtime = build_runtime(_settings(tmp_path, sim_server.url), engine={"seed": 1})
    assert runtime.engine_settings().seed == 1
    assert runtime.engine_settings().slots == 2

    async def carry() -> dict[TaskStatus, int]:
        monitor = runtime.monitor(runtime.client())
        requests = [
            GenericRequest(
                task_path="/v1/videos/text2video",
                payload={"prompt": f"clip {i}", "duration": "5"},
            )
            for i in range(3)
        ]
        batch = monitor.submit(requests, batch="rt")
        await asyncio.wait_for(monitor.run(batch=batch.id), 60)
        counts = monitor.store.tasks.count_by_status(batch.id)
        await monitor.aclose()
        return counts

    with runtime:
        counts = asyncio.run(carry())
    assert {s: n for s, n in counts.items() if n} == {TaskStatus.SUCCEED: 3}
    assert len(list((tmp_path / "out").rglob("*.mp4"))) == 3
    assert sim_server.sim.counters()["max_in_flight"] <= 2


def test_callback_urls_and_the_web_app_share_one_secret(tmp_path):
    """The token in each task's callback_url is the one the web app checks, and the
    secret made for it is kept in the store for the next process."""
    settings = Settings(
        db=str(tmp_path / "cb.db"), public_url="https://hooks.example.com/base"
    )
    with build_runtime(settings) as runtime:
        url = runtime.engine_settings().callback_url
        assert url is not None
        secret = runtime.server_secret()
        assert url("ext-1") == (
            "https://hooks.example.com/base"
            + CALLBACK_PATH
            + callback_token(secret, "ext-1")
        )
        assert runtime.web_app() is not None
    with build_runtime(settings) as again:
        assert again.server_secret() == secret
    assert build_runtime(Settings(db=str(tmp_path / "x.db"))).callback_url() is None


def test_account_clients_follow_each_account_s_settings(tmp_path):
    """One client per configured account, each on its own base URL and keys; the
    default one only when it has keys; an unknown account is named in the error."""
    settings = Settings(
        db=str(tmp_path / "rt.db"),
        api_base="http://127.0.0.1:9",
        accounts=(
            AccountSettings(name="studio", api_key=Secret("studio-key")),
            AccountSettings(
                name="agency", api_base="http://127.0.0.1:8", api_key=Secret("k")
            ),
        ),
    )
    with build_runtime(settings) as runtime:
        clients = runtime.account_clients()
        assert clients.names == ["agency", "studio"]
        assert clients.primary == "agency"
        assert clients.of("agency").base_url == "http://127.0.0.1:8"
        assert clients.of("studio").base_url == "http://127.0.0.1:9"
        with pytest.raises(ConfigError, match="no account 'default' is configured"):
            clients.of(None)
        monitor = runtime.monitor()
        request = GenericRequest(
            task_path="/text-to-video/kling-3.0", payload={"prompt": "a fox"}
        )
        with pytest.raises(UsageError, match="no account 'nobody'"):
            monitor.submit(
                [request],
                accounts=["studio", "nobody"],
            )
        assert monitor.store.tasks.batches() == []  # nothing stored
        asyncio.run(clients.aclose())


def test_the_engine_hears_which_accounts_callbacks_need_no_confirmation(tmp_path):
    """Signed accounts' final callbacks apply at once, so their search for dropped
    ones gets the request a confirmation would take; with ``serve --no-confirm``
    every account's do."""
    settings = Settings(
        db=str(tmp_path / "rt.db"),
        accounts=(
            AccountSettings(
                name="studio",
                api_key=Secret("k"),
                webhook_secret=Secret("whsec_" + "c3R1ZGlvLXNlY3JldA=="),
            ),
        ),
    )
    with build_runtime(settings) as runtime:
        assert runtime.engine_settings().signed_accounts == {"studio"}
        unconfirmed = runtime.engine_settings(confirm=False)
        assert unconfirmed.signed_accounts == {"default", "studio"}
        monitor = runtime.engine_monitor(confirm=False)
        assert monitor.settings.signed_accounts == {"default", "studio"}
        asyncio.run(monitor.close_clients())
    plain = Settings(db=str(tmp_path / "plain.db"))
    assert build_runtime(plain).engine_settings().signed_accounts == set()
