"""The account's packs on the dashboard's overview and in ``/metrics``: the
process's last answer, else what another process saved in the store."""

from __future__ import annotations

import asyncio
import re

import pytest
from dashboard_support import client
from engine_support import loopback_monitor

from klingmon.api import Text2VideoRequest
from klingmon.engine import Account
from klingmon.sim import Faults, ResourcePack, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer
from klingmon.web import Dashboard, create_app

DAY = 86_400.0
PACKS = (
    ResourcePack(name="Video soon", total=40.0, pack_id="7001", expires_in=2 * DAY),
    ResourcePack(name="Video later", total=500.0, pack_id="7002"),
)


@pytest.fixture(scope="module")
def charged(tmp_path_factory: pytest.TempPathFactory):
    """Four one-unit tasks charged to the first pack, then the packs asked."""
    db = tmp_path_factory.mktemp("acct") / "k.db"
    config = SimConfig(
        admin=True, seed=9, time_scale=1000.0, packs=PACKS, faults=Faults(fail_rate=0)
    )
    with SimServer(config) as server:
        monitor = loopback_monitor(server.url, server.sim, db)
        # The engine's refresh at the start saw no charge; this one sees them all.
        account = Account(store=monitor.store)

        async def run() -> None:
            try:
                monitor.submit([Text2VideoRequest(prompt=f"p{i}") for i in range(4)])
                await monitor.run()
                await account.costs(monitor.client)
            finally:
                await monitor.aclose()

        asyncio.run(run())
    return db, account


def _metric(text: str, name: str, pack: str) -> float:
    found = re.search(
        rf'^{name}\{{pack="{re.escape(pack)}"\}} (\S+)$', text, re.MULTILINE
    )
    assert found is not None, f"{name} for {pack} missing"
    return float(found.group(1))


@pytest.mark.parametrize("shared", [True, False], ids=["this process", "from store"])
async def test_metrics_show_units_left_and_expiry_per_pack(charged, shared):
    db, account = charged
    with Store.open(str(db)) as store:
        app = create_app(store, secret=b"s" * 32, account=account if shared else None)
        async with client(app) as http:
            text = (await http.get("/metrics")).text
    figures = account.latest()
    assert figures is not None
    soon, later = figures.packs
    assert _metric(text, "klingmon_pack_remaining_units", "Video soon (7001)") == 36.0
    assert _metric(text, "klingmon_pack_total_units", "Video soon (7001)") == 40.0
    assert _metric(text, "klingmon_pack_remaining_units", "Video later (7002)") == 500
    assert soon.expires_ms is not None
    assert later.expires_ms is not None
    expires = _metric(
        text, "klingmon_pack_expires_timestamp_seconds", "Video soon (7001)"
    )
    assert expires == soon.expires_ms / 1000
    fetched = re.search(
        r"^klingmon_account_costs_timestamp_seconds (\S+)$", text, re.MULTILINE
    )
    assert fetched is not None
    assert float(fetched.group(1)) == figures.fetched_ms / 1000


async def test_no_pack_metrics_before_kling_was_asked(tmp_path):
    with Store.open(str(tmp_path / "k.db")) as store:
        async with client(create_app(store, secret=b"s" * 32)) as http:
            text = (await http.get("/metrics")).text
    assert "klingmon_tasks{" in text
    assert "klingmon_pack_" not in text
    assert "klingmon_account_costs" not in text


async def test_the_overview_shows_the_packs_and_badges_the_one_expiring(charged):
    db, _ = charged
    with Store.open(str(db)) as store:
        app = create_app(store, secret=b"s" * 32, dashboard=Dashboard())
        async with client(app) as http:
            page = (await http.get("/")).text
    card = page[page.index('id="packs"') :]
    card = card[: card.index("</div>")]
    assert "536.0<small> units left</small>" in card
    assert "Video soon (7001): 36.0 / 40.0" in card
    assert "Video later (7002): 500.0 / 500.0" in card
    badges = re.findall(r'<span class="badge" role="status">([^<]*)</span>', card)
    assert badges == ["expires in 2.0 days"]
