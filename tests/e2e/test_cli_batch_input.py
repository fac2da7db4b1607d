"""Bad input, found in one run: the real CLI against the simulator on loopback."""

from __future__ import annotations

import json

import pytest
from cli_support import cli_env, klingmon

from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer


@pytest.fixture
def server():
    config = SimConfig(
        admin=True, seed=31, time_scale=2000.0, slots=10, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as running:
        yield running


def _creates(server: SimServer) -> int:
    return int(server.sim.counters()["requests_by_route"].get("create", 0))


def test_five_bad_rows_are_reported_in_one_run_and_nothing_is_sent(server, tmp_path):
    """Five different mistakes: all five named, exit 2, no task stored or created."""
    env = cli_env(server, tmp_path / "k.db")
    path = tmp_path / "prompts.csv"
    path.write_text(
        "prompt,mode,cfg_scale,duration,endpoint\n"
        "fine,std,0.5,5,\n"
        "too strong,std,1.5,5,\n"
        "odd mode,professional,0.5,5,\n"
        "odd length,std,0.5,7,\n"
        "no video,,,,video-extend\n"
        "not a number,std,high,5,\n",
        encoding="utf-8",
    )
    result = klingmon("submit", str(path), "-b", "launch", "--watch", env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: {path}:3: cfg_scale: Input should be less than or equal to 1",
        f"{path}:4: mode: Input should be 'std' or 'pro'",
        f"{path}:5: duration: Input should be '5' or '10'",
        f"{path}:6: video_id: Field required",
        f"{path}:7: cfg_scale: not a number",
        f"{path}: 5 problems on 5 lines; nothing stored",
    ]
    assert _creates(server) == 0
    status = klingmon("status", "--json", env=env)
    assert json.loads(status.stdout) == []


def test_a_semicolon_csv_submits(server, tmp_path):
    """A spreadsheet's ;-separated export reads as its columns, a '#' prompt kept."""
    env = cli_env(server, tmp_path / "k.db")
    path = tmp_path / "prompts.csv"
    path.write_text(
        "prompt;mode;cfg_scale\n"
        '"a fox; at dawn";pro;0.5\n'
        "a boat;std;0.2\n"
        "#1 bestseller shot;std;\n",
        encoding="utf-8",
    )
    stored = klingmon("submit", str(path), "-b", "semi", "--json", env=env)
    assert stored.returncode == 0, stored.stderr
    assert json.loads(stored.stdout)["tasks"] == 3
    exported = klingmon("export", "semi", "--format", "json", env=env)
    rows = sorted(
        (r["seq"], r["prompt"], r["mode"]) for r in json.loads(exported.stdout)
    )
    assert rows == [
        (1, "a fox; at dawn", "pro"),
        (2, "a boat", "std"),
        (3, "#1 bestseller shot", "std"),
    ]


def test_dry_run_says_the_batch_name_is_free(server, tmp_path):
    """A dry run checks the name against the store and says so; a missing file too."""
    env = cli_env(server, tmp_path / "k.db")
    good = tmp_path / "p.txt"
    good.write_text("#1 bestseller shot\n\na boat\n", encoding="utf-8")
    free = klingmon("submit", str(good), "-b", "launch", "--dry-run", env=env)
    assert free.returncode == 0, free.stderr
    assert free.stderr.strip().splitlines()[-1] == (
        f"{good}: 2 tasks, all valid; batch name 'launch' is free (nothing stored)"
    )
    assert "Total: 2 tasks, 2 units" in free.stderr  # the quote, before that line
    missing = klingmon("submit", str(tmp_path / "gone.csv"), "--dry-run", env=env)
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"Error: {tmp_path / 'gone.csv'}: No such file"


def test_dry_run_refuses_a_taken_name_along_with_every_bad_row(server, tmp_path):
    """A taken name is exit 2, and shows together with the file's bad rows."""
    env = cli_env(server, tmp_path / "k.db")
    good = tmp_path / "p.txt"
    good.write_text("a fox\n", encoding="utf-8")
    assert klingmon("submit", str(good), "-b", "launch", env=env).returncode == 0
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"promt": "a fox"}\n{"prompt": "b", "mode": "x"}\n')
    both = klingmon("submit", str(bad), "-b", "launch", "--dry-run", env=env)
    assert both.returncode == 2
    assert both.stderr.strip().splitlines() == [
        "Error: a batch named 'launch' already exists; choose another --batch",
        f"Error: {bad}:1: promt: unknown field for text2video (did you mean 'prompt'?)",
        f"{bad}:2: mode: Input should be 'std' or 'pro'",
        f"{bad}: 2 problems on 2 lines; nothing stored",
    ]
    assert _creates(server) == 0


def test_bad_settings_are_usage_errors_naming_the_setting(server, tmp_path):
    """slots = "many" in klingmon.toml and KLING_API_BASE=ftp://x: exit 2, one line."""
    env = cli_env(server, tmp_path / "k.db")
    (tmp_path / "klingmon.toml").write_text('slots = "many"\n', encoding="utf-8")
    result = klingmon("status", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Error: klingmon.toml: slots: Input should be a valid integer"
    )
    ftp = klingmon("status", env={**env, "KLING_API_BASE": "ftp://x"})
    assert ftp.returncode == 2
    assert ftp.stderr.strip() == (
        "Error: api_base (--api-base, KLING_API_BASE): must be an http(s) URL with "
        "a host, like https://api-singapore.klingai.com"
    )
