"""The simulator's price table: built in, overridden, charged and reported."""

from __future__ import annotations

import pytest
from simhelp import T2V, config, create

from klingmon.sim import PriceTable

T2V3 = "/text-to-video/kling-3.0"
DAY = 86400.0


async def test_built_in_prices_are_charged_and_reported(connect, clock):
    """A legacy clip costs §8.4's units; the ledger counts them once it succeeds."""
    sim, client = await connect(config())
    task = await create(client, model_name="kling-v1-6", mode="pro", duration="10")
    assert sim.counters()["units_committed"] == 7
    assert sim.counters()["units_charged"] == 0
    clock.advance(DAY)
    got = await client.get(f"{T2V}/{task['task_id']}")
    assert got.json()["data"]["final_unit_deduction"] == "7"
    counters = sim.counters()
    assert counters["units_charged"] == 7
    assert counters["packs_remaining"]["Video pack 1000"] == 993


async def test_overrides_scale_by_duration_mode_and_audio(connect, clock):
    """An override is per 5-s std clip; duration, pro/1080p and audio scale it."""
    table = PriceTable(
        units={T2V: 2.0, "kling-3.0": 4.0}, pro_factor=2.0, audio_factor=1.5
    )
    sim, client = await connect(config(prices=table, slots=10, video_slots=10))
    await create(client, external_task_id="a", duration="10", mode="pro")
    await create(client, external_task_id="b", sound="on")
    body = {"settings": {"duration": 10, "resolution": "1080p", "audio": "native"}}
    new = await client.post(
        T2V3, json={"prompt": "x", "options": {"external_task_id": "c"}, **body}
    )
    task_id = new.json()["data"]["id"]
    clock.advance(DAY)
    charges = sim.counters()["charges_per_external_id"]
    assert charges == {"a": 8.0, "b": 3.0, "c": 24.0}
    [task] = (await client.get("/tasks", params={"task_ids": task_id})).json()["data"]
    assert task["billing"][0] == {
        "charge_type": "unit",
        "amount": "24",
        "package_type": "video",
    }
    costs = (await client.get("/account/costs")).json()["data"]
    video = costs["resource_pack_subscribe_infos"][0]
    assert video["remaining_quantity"] == 1000 - 8 - 3 - 24


def test_a_negative_price_is_refused():
    """A price table with a negative price is a configuration error."""
    with pytest.raises(ValueError, match=">= 0"):
        PriceTable(units={T2V: -1.0})
