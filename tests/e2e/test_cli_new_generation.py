"""The new API generation from the CLI: auth per generation, warnings, track, import."""

from __future__ import annotations

import json

import pytest
from cli_support import cli_env, klingmon

from klingmon.api import GenericRequest, KlingClient
from klingmon.errors import ExitCode
from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer

_NEW = "/text-to-video/kling-3.0"


@pytest.fixture
def server():
    config = SimConfig(
        admin=True, seed=41, time_scale=2000.0, slots=10, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as running:
        yield running


def _creates(server: SimServer) -> int:
    return int(server.sim.counters()["requests_by_route"].get("create", 0))


def _mixed(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(
        f"endpoint,prompt,duration\ntext2video,old,5\n{_NEW},new,8\n", encoding="utf-8"
    )
    return path


@pytest.mark.parametrize("flags", [(), ("--watch",), ("--no-preflight",)])
def test_new_rows_with_only_a_key_pair_stop_before_anything_is_stored(
    server, tmp_path, flags
):
    """One line naming KLING_API_KEY, exit 2, nothing stored, nothing sent."""
    env = cli_env(server, tmp_path / "k.db")
    result = klingmon("submit", str(_mixed(tmp_path)), "-b", "mixed", *flags, env=env)
    assert result.returncode == ExitCode.USAGE, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {_NEW} is a new-generation Kling endpoint")
    assert "set KLING_API_KEY" in line
    assert "nothing was stored" in line
    assert "sim-secret-key" not in result.stderr
    assert _creates(server) == 0
    assert server.sim.counters()["requests"] == {}
    status = klingmon("status", "--json", env=env)
    assert json.loads(status.stdout) == []


def test_a_dry_run_sends_nothing_but_says_so(server, tmp_path):
    """--dry-run names the missing API key too, and exits 2."""
    env = cli_env(server, tmp_path / "k.db")
    result = klingmon("submit", str(_mixed(tmp_path)), "--dry-run", "--json", env=env)
    assert result.returncode == ExitCode.USAGE, result.stderr
    answer = json.loads(result.stdout)
    assert answer["valid"] is False
    assert "KLING_API_KEY" in answer["credentials"]
    assert "KLING_API_KEY" in result.stderr
    assert server.sim.counters()["requests"] == {}


def test_with_an_api_key_the_mixed_batch_is_stored_and_warnings_shown(server, tmp_path):
    """An API key reaches both generations; capability doubts are warning lines."""
    env = cli_env(server, tmp_path / "k.db", KLING_API_KEY="sim-api-key")
    path = _mixed(tmp_path)
    path.write_text(
        path.read_text(encoding="utf-8") + "/text-to-video/kling-9.9,future,5\n",
        encoding="utf-8",
    )
    result = klingmon("submit", str(path), "-b", "mixed", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tasks"] == 3
    warnings = [
        line for line in result.stderr.splitlines() if line.startswith("Warning:")
    ]
    assert warnings == [
        (
            f"Warning: {path}:4: model 'kling-9.9' is not in klingmon's capability "
            "table; not checked"
        )
    ]
    assert _creates(server) == 0


def test_track_and_import_adopt_new_generation_tasks(server, tmp_path):
    """track by id on a new path, import by POST /tasks: adopted once each."""
    env = cli_env(server, tmp_path / "k.db", KLING_API_KEY="sim-api-key")
    with KlingClient(base_url=server.url, api_key="sim-api-key") as client:
        made = [
            client.submit(GenericRequest(task_path=_NEW, payload={"prompt": f"p{i}"}))
            for i in range(3)
        ]
    ids = [s.task_id for s in made]
    tracked = klingmon(
        "track", ids[0], "--endpoint", _NEW, "-b", "mine", "--json", env=env
    )
    assert tracked.returncode == 0, tracked.stderr
    assert json.loads(tracked.stdout)["tasks"] == 1
    imported = klingmon("import", "--endpoint", _NEW, "-b", "rest", "--json", env=env)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["tasks"] == 2
    exported = json.loads(klingmon("export", "--json", env=env).stdout)
    assert sorted(t["task_id"] for t in exported) == sorted(ids)
    assert {t["endpoint"] for t in exported} == {_NEW}
    again = klingmon("import", "--endpoint", _NEW, env=env)
    assert again.returncode == 0, again.stderr
    assert "Nothing new" in again.stderr
    routes = server.sim.counters()["requests_by_route"]
    assert routes.get("create", 0) == 3
