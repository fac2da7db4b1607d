"""The account's packs in the real ``klingmon`` command, against the simulator on
loopback: ``status --account`` asks Kling and keeps the figures, ``status`` shows
them as last seen, ``submit`` points out a pack about to expire."""

from __future__ import annotations

import json

import pytest
from cli_support import cli_env, klingmon

from klingmon.sim import Faults, ResourcePack, SimConfig
from klingmon.testing import SimServer

DAY = 86_400.0


@pytest.fixture
def server():
    packs = (
        ResourcePack(name="Video soon", total=40.0, pack_id="7001", expires_in=3 * DAY),
        ResourcePack(name="Video later", total=500.0, pack_id="7002"),
    )
    config = SimConfig(
        admin=True, seed=31, time_scale=2000.0, packs=packs, faults=Faults(fail_rate=0)
    )
    with SimServer(config) as running:
        yield running


def _costs_asked(server: SimServer) -> int:
    return int(server.sim.counters()["requests_by_route"].get("costs", 0))


def test_status_shows_the_packs_and_the_one_about_to_expire(server, tmp_path):
    env = cli_env(server, tmp_path / "k.db")
    plain = klingmon("status", env=env)
    assert plain.returncode == 0, plain.stderr
    assert "Resource packs" not in plain.stdout  # never asked yet
    assert _costs_asked(server) == 0

    asked = klingmon("status", "--account", "--json", env=env)
    assert asked.returncode == 0, asked.stderr
    found = json.loads(asked.stdout)
    assert _costs_asked(server) == 1
    assert found["remaining"] == 540.0
    assert found["expiring"] == ["Video soon (7001)"]
    assert found["expiry_warning_days"] == 7
    by_name = {p["name"]: p for p in found["packs"]}
    assert by_name["Video soon"]["remaining"] == 40.0
    assert by_name["Video soon"]["status"] == "online"
    soon, later = (
        by_name["Video soon"]["expires_ms"],
        by_name["Video later"]["expires_ms"],
    )
    assert later - soon > 300 * DAY * 1000

    # Another process, no request: the figures as last seen, with their time.
    shown = klingmon("status", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "Resource packs (as of" in shown.stdout
    assert "Video later (7002)" in shown.stdout
    warning = [line for line in shown.stderr.splitlines() if "7001" in line]
    assert len(warning) == 1
    assert warning[0].startswith("Warning: resource pack Video soon (7001) expires")
    assert "with 40 units left" in warning[0]
    assert "7002" not in shown.stderr
    assert _costs_asked(server) == 1


def test_submit_points_out_a_pack_about_to_expire(server, tmp_path):
    env = cli_env(server, tmp_path / "k.db")
    prompts = tmp_path / "p.txt"
    prompts.write_text("one\ntwo\n")
    stored = klingmon("submit", str(prompts), "-b", "soon", env=env)
    assert stored.returncode == 0, stored.stderr
    assert "Warning: resource pack Video soon (7001) expires" in stored.stderr
    assert _costs_asked(server) == 1
    status = json.loads(klingmon("status", "--json", env=env).stdout)
    assert [b["batch"] for b in status] == ["soon"]  # the batch list, as before
