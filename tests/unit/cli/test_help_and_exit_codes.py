"""Every command's help, the one exit-code table, and global options anywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperArgument, TyperGroup, TyperOption
from typer.testing import CliRunner

import klingmon.errors
from klingmon import __version__
from klingmon.cli import app
from klingmon.errors import ExitCode, KlingmonError, exit_code_table

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "errors.md"


def _paths(command, prefix=()):
    """Every command path of the tree, groups included: ("db",), ("db", "upgrade")."""
    yield prefix
    if isinstance(command, TyperGroup):
        for name, sub in command.commands.items():
            yield from _paths(sub, (*prefix, name))


def _command(path):
    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


PATHS = list(_paths(typer.main.get_command(app)))


@pytest.fixture
def runner():
    return CliRunner()


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "klingmon")
def test_every_command_has_help_for_every_option(path, runner):
    """`klingmon … --help` works and every option and argument says what it is for."""
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    command = _command(path)
    assert (command.help or "").strip(), f"{path}: no summary"
    for param in command.params:
        if isinstance(param, TyperOption | TyperArgument):
            assert (param.help or "").strip(), f"{' '.join(path)}: {param.name}"
    shown = [p for p in command.params if isinstance(p, TyperOption) and not p.hidden]
    for param in shown:
        assert param.opts[0] in result.output, param.opts[0]


def test_command_summaries_are_not_cut(runner):
    """`klingmon --help` at 80 columns lists every command's whole first sentence."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "80"})
    listing = result.output.split("Commands:", 1)[1].split("Exit codes:", 1)[0]
    assert "..." not in listing
    assert "…" not in listing
    for name in typer.main.get_command(app).commands:
        assert re.search(rf"^  {name} ", listing, re.MULTILINE), name


def test_version(runner):
    """`klingmon --version` prints the package version and exits 0."""
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"klingmon {__version__}"


def _doc_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    pattern = r"<!-- exit-codes:start[^>]*-->\n(.*?)\n<!-- exit-codes:end -->"
    match = re.search(pattern, text, re.DOTALL)
    assert match, "docs/errors.md lost its exit-codes markers"
    return match.group(1)


def test_docs_exit_code_table_is_the_code():
    """docs/errors.md carries exactly the table ExitCode makes (paste it if not)."""
    assert _doc_block() == exit_code_table(), "\n" + exit_code_table()


def test_help_lists_every_exit_code(runner):
    """`klingmon --help` ends with every exit code and its meaning."""
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "80"})
    codes = result.output.split("Exit codes:", 1)[1]
    for code in ExitCode:
        assert re.search(
            rf"^\s+{code.value}\s+{re.escape(code.description)}$", codes, re.MULTILINE
        )


def _class_rows() -> dict[str, tuple[str, int]]:
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\| `(\w+)` \| .* \| ([^|]+) \| (\d+) \|$", line)
        if match:
            rows[match.group(1)] = (match.group(2).strip(), int(match.group(3)))
    return rows


def test_docs_error_classes_match_the_code():
    """Each error class's row in docs/errors.md has its real exit code and retryable."""
    rows = _class_rows()
    classes = {
        name: getattr(klingmon.errors, name)
        for name in klingmon.errors.__all__
        if isinstance(getattr(klingmon.errors, name), type)
        and issubclass(getattr(klingmon.errors, name), KlingmonError)
        and name not in {"KlingmonError", "ApiError"}
    }
    assert set(rows) == set(classes)
    for name, (retryable, exit_code) in rows.items():
        cls = classes[name]
        assert cls.exit_code == exit_code, name
        assert cls.exit_code in set(ExitCode), name
        if retryable in {"yes", "no"}:
            assert cls.retryable is (retryable == "yes"), name


def test_global_options_work_after_the_command(runner, tmp_path, monkeypatch):
    """`status --db X` uses X; a flag after the command beats the one before and env."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("KLINGMON_DB", str(tmp_path / "env.db"))
    result = runner.invoke(app, ["--db", "before.db", "status", "--db", "after.db"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "after.db").exists()
    assert not (tmp_path / "before.db").exists()
    assert not (tmp_path / "env.db").exists()
    bad = runner.invoke(app, ["status", "--slots", "0", "--json"])
    assert bad.exit_code != 0
    assert isinstance(bad.exception, klingmon.errors.ConfigError)
