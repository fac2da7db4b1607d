"""The exit code and the one line a user sees, through the real entry point ``main``.

These cases need no Kling answer, so they run in-process against a real SQLite store
(``main`` is what the ``klingmon`` script calls); the cases that need the simulator
are in tests/e2e/test_cli_commands.py.
"""

from __future__ import annotations

import sys

import pytest

from klingmon.cli import main
from klingmon.cli._context import invocation


@pytest.fixture
def run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name in ("KLINGMON_CONFIG", "KLINGMON_DB", "KLING_API_BASE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))

    def invoke(*args: str) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", ["klingmon", "--db", "k.db", *args])
        with pytest.raises(SystemExit) as done:
            main()
        code = done.value.code
        return (code if isinstance(code, int) else 0), capsys.readouterr().err.strip()

    return invoke


def test_unknown_batch_is_exit_2_for_every_command(run, tmp_path):
    """An unknown batch is a usage mistake (2), never the store failing (7)."""
    (tmp_path / "p.txt").write_text("a fox\n")
    assert run("submit", "p.txt", "-b", "real", "--no-preflight")[0] == 0
    for args in (("retry", "nope"), ("export", "nope"), ("download", "nope")):
        code, err = run(*args)
        assert code == 2, (args, err)
        assert err.splitlines() == [err]
        assert err.startswith("Error: no batch 'nope'")


def test_retry_with_nothing_failed_exits_0_and_says_so(run, tmp_path):
    """retry of a batch with no failed task stores nothing and exits 0."""
    (tmp_path / "p.txt").write_text("a fox\n")
    assert run("submit", "p.txt", "-b", "fine", "--no-preflight")[0] == 0
    assert run("retry", "fine") == (
        0,
        "Nothing to retry: batch fine has no failed or rejected tasks",
    )
    assert run("status", "--json")[0] == 0


def test_a_bad_config_value_exits_2(run, tmp_path):
    """A wrong-typed value in klingmon.toml is one line and exit 2."""
    (tmp_path / "klingmon.toml").write_text('slots = "many"\n')
    code, err = run("status", "--config", "klingmon.toml")
    assert code == 2, err
    assert err.startswith("Error: ")
    assert len(err.splitlines()) == 1


def test_a_taken_batch_name_exits_2(run, tmp_path):
    """Submitting under a name already used is refused with exit 2, not 7."""
    (tmp_path / "p.txt").write_text("a fox\n")
    assert run("submit", "p.txt", "-b", "launch", "--no-preflight")[0] == 0
    code, err = run("submit", "p.txt", "-b", "launch", "--no-preflight")
    assert code == 2
    assert err.splitlines() == [err]
    assert err.startswith("Error: a batch named 'launch' already exists; nothing")


def test_a_store_that_cannot_be_used_exits_7(run, tmp_path):
    """Exit 7 is kept for a store that cannot be opened."""
    (tmp_path / "not-a-db").write_text("this is not sqlite")
    code, err = run("status", "--db", "not-a-db")
    assert code == 7, err
    assert err.startswith("Error: ")


def test_hints_name_klingmon_as_it_was_run(tmp_path, monkeypatch):
    """Hints say `.venv/bin/klingmon` unless that very script is on PATH."""
    script = tmp_path / ".venv" / "bin" / "klingmon"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/klingmon", "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert invocation() == ".venv/bin/klingmon"
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")
    assert invocation() == "klingmon"
    monkeypatch.setattr(sys, "argv", ["/somewhere/klingmon/__main__.py"])
    assert invocation().endswith(" -m klingmon")
