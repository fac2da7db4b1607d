"""Several accounts end to end: the engine over loopback HTTP to two simulated
accounts behind one base URL (:class:`~klingmon.sim.SimAccounts`).

A batch named on both is spread by free slots; each task is created once, on one
account, and its polls, lookups and files go with that account's key: a key
sees only its own account's tasks, so a lookup sent with the wrong one would
never find the task finished.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from newgen_support import FAST

from klingmon.api import AsyncKlingClient, GenericRequest, RetryPolicy
from klingmon.domain import TaskStatus
from klingmon.downloads import DownloadSettings
from klingmon.engine import EngineSettings, Monitor
from klingmon.sim import Faults, SimAccounts, SimConfig
from klingmon.store import Store
from klingmon.testing import AppServer

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

    from klingmon.store import TaskRow

    Before = Callable[[Monitor, dict[str, AsyncKlingClient]], Awaitable[None]]

V3 = "/text-to-video/kling-3.0"
IMG = "/image-generation/kling-3.0"
LEGACY = "/v1/videos/text2video"


def _account(name: str, *, video_slots: int = 3) -> SimConfig:
    return SimConfig(
        admin=True,
        seed=7,
        time_scale=1000.0,
        slots=3,
        video_slots=video_slots,
        image_slots=8,
        faults=Faults(fail_rate=0.0),
        access_key=f"{name}-access",
        secret_key=f"{name}-secret-key-0123456789",
        api_key=f"{name}-api-key",
    )


def _client(url: str, sim: SimConfig) -> AsyncKlingClient:
    return AsyncKlingClient(
        base_url=url,
        access_key=sim.access_key,
        secret_key=sim.secret_key,
        api_key=sim.api_key,
        retry=RetryPolicy(attempts=5, base=0.01, cap=0.05),
    )


def _batch(rounds: int) -> list[GenericRequest]:
    out: list[GenericRequest] = []
    for i in range(rounds):
        out += [
            GenericRequest(task_path=V3, payload={"prompt": f"a heron {i}"}),
            GenericRequest(task_path=IMG, payload={"prompt": f"a poster {i}", "n": 4}),
            GenericRequest(task_path=LEGACY, payload={"prompt": f"a legacy {i}"}),
        ]
    return out


async def _run(
    tmp_path: Path,
    configs: dict[str, SimConfig],
    *,
    told: dict[str, int],
    requests: list[GenericRequest] | None = None,
    before: Before | None = None,
) -> tuple[SimAccounts, list[TaskRow], Path]:
    accounts = SimAccounts(configs)
    server = AppServer(accounts.app)
    server.start()
    out = tmp_path / "out"
    try:
        clients = {name: _client(server.url, c) for name, c in configs.items()}
        monitor = Monitor(
            store=Store.open(str(tmp_path / "k.db")),
            clients=clients,
            settings=EngineSettings(
                slots=3,
                pools=tuple(told.items()),
                rate=200.0,
                max_rate=500.0,
                schedule=FAST,
                submit_backoff_base=0.02,
                submit_backoff_cap=0.2,
                idle_max=0.1,
                watchdog_interval=0.05,
                seed=1,
                downloads=DownloadSettings(
                    out=str(out),
                    allow_origins=(server.url,),
                    backoff_base=0.01,
                    backoff_cap=0.05,
                ),
            ),
        )
        stored = monitor.submit(
            requests or _batch(6), batch="both", accounts=["a", "b"]
        )
        if before is not None:
            await before(monitor, clients)
        await asyncio.wait_for(monitor.run(batch=stored.id), timeout=60)
        rows = monitor.store.tasks.tasks(stored.id)
        for client in clients.values():
            await client.aclose()
        monitor.store.close()
    finally:
        server.stop()
    return accounts, rows, out


def _created(accounts: SimAccounts) -> dict[str, dict[str, int]]:
    """Per account, the creates that reached it by external id."""
    return {
        name: dict(c["creates_per_external_id"])
        for name, c in accounts.counters().items()
    }


async def test_a_batch_on_two_accounts_is_spread_and_each_task_stays_on_its_own(
    tmp_path: Path,
):
    configs = {"a": _account("a"), "b": _account("b")}
    told = {"kling-3.0/image": 8}
    accounts, rows, out = await _run(tmp_path, configs, told=told)
    assert {r.status for r in rows} == {TaskStatus.SUCCEED}
    # Spread: each account took part of every pool.
    by_account: dict[str, set[str]] = {}
    for r in rows:
        by_account.setdefault(r.account or "?", set()).add(r.endpoint)
    assert by_account == {"a": {V3, IMG, LEGACY}, "b": {V3, IMG, LEGACY}}
    # Each task was created once, on the account the store says, never the other.
    created = _created(accounts)
    for r in rows:
        other = "b" if r.account == "a" else "a"
        assert created[r.account or "?"].get(r.external_task_id) == 1
        assert r.external_task_id not in created[other]
        assert accounts.account(r.account or "?").holds(r.task_id or "")
    # Its lookups found it finished (only its own account's key could), and its
    # files came (each from the account that made it).
    files = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert len(files) >= len(rows)
    for name, counters in accounts.counters().items():
        assert counters["answers_1303"] == 0, name
        sizes = counters["max_in_flight_per_pool"]
        assert sizes.get("kling-3.0/video", 0) <= 3
        assert sizes.get("kling-3.0/image", 0) <= 8
        assert sizes.get("legacy", 0) <= 3


async def test_a_1303_requeues_a_task_on_the_account_it_was_placed_on(
    tmp_path: Path,
):
    """klingmon is told 3 video slots where account b has 1: b's 1303s shrink b's
    pool only, and every refused task is sent again on b, never on a."""
    configs = {"a": _account("a"), "b": _account("b", video_slots=1)}
    accounts, rows, _ = await _run(tmp_path, configs, told={"kling-3.0/image": 8})
    assert {r.status for r in rows} == {TaskStatus.SUCCEED}
    counters = accounts.counters()
    assert counters["b"]["answers_1303"] > 0
    assert counters["a"]["answers_1303"] == 0
    created = _created(accounts)
    both = set(created["a"]) & set(created["b"])
    assert both == set()  # no external id was ever sent to both accounts
    assert set(created["a"]) | set(created["b"]) == {r.external_task_id for r in rows}
    assert counters["b"]["max_in_flight_per_pool"]["kling-3.0/video"] == 1


async def test_a_create_cut_off_by_a_crash_is_looked_up_on_its_own_account(
    tmp_path: Path,
):
    """A worker claimed a task (placed on an account), wrote its intent and sent the
    create, then died before the answer was stored: the next run looks it up with
    that account's key, finds it there and never creates it again anywhere."""
    sent: dict[str, str] = {}

    async def crash(monitor: Monitor, clients: dict[str, AsyncKlingClient]) -> None:
        now_ms = int(time.time() * 1000) - 5_000
        (row,) = monitor.store.tasks.claim_submissions(
            "dead-worker", now_ms, 1, slots=3
        )
        assert row.account in {"a", "b"}
        monitor.store.tasks.mark_submitting(row.id, now_ms)
        request = GenericRequest(task_path=row.endpoint, payload=dict(row.body))
        made = await clients[row.account or "?"].submit(
            request, external_task_id=row.external_task_id
        )
        sent[row.account or "?"] = made.task_id

    one = [GenericRequest(task_path=V3, payload={"prompt": "cut off"})]
    configs = {"a": _account("a"), "b": _account("b")}
    accounts, rows, _ = await _run(
        tmp_path, configs, told={}, requests=one, before=crash
    )
    (row,) = rows
    assert row.status is TaskStatus.SUCCEED
    assert {row.account: row.task_id} == sent
    created = _created(accounts)
    assert created[row.account or "?"] == {row.external_task_id: 1}
    other = "b" if row.account == "a" else "a"
    assert created[other] == {}
