"""scripts/dev/private_imports.py: finds imports of another package's private module
and points them at the package's ``__init__``."""

from __future__ import annotations

import ast
import re
from typing import TYPE_CHECKING

import pytest
from scripts.dev import private_imports

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small klingmon: package ``a`` with a private module, ``b`` reaching into it."""
    src = tmp_path / "src"
    a = src / "klingmon" / "a"
    b = src / "klingmon" / "b"
    for folder in (src / "klingmon", a, b):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "__init__.py").write_text("")
    (a / "__init__.py").write_text(
        '"""A."""\n\nfrom klingmon.a._x import Zed, helper\n\n'
        '__all__ = ["Zed", "helper"]\n'
    )
    (a / "_x.py").write_text(
        "LIMIT = 1\n\n\nclass Alpha: ...\n\n\nclass Zed: ...\n\n\n"
        "def helper() -> None: ...\n\n\ndef _hidden() -> None: ...\n"
    )
    (a / "_inner.py").write_text("from klingmon.a._x import Alpha\n")
    (b / "_y.py").write_text(
        "from klingmon.a._x import LIMIT, Alpha, Zed\n"
        "from klingmon.a._x import _hidden\n"
        "from klingmon.a import _x\n"
    )
    monkeypatch.setattr(private_imports, "ROOT", tmp_path)
    monkeypatch.setattr(private_imports, "SRC", src)
    return src / "klingmon"


def test_lists_cross_package_private_imports_only(tree, capsys):
    """Imports from inside the package are fine; the three from outside are listed."""
    assert private_imports.main([str(tree)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 4
    assert all("b/_y.py" in line for line in out[:3])
    assert "(private: _hidden)" in out[1]
    assert "(module import" in out[2]
    assert out[-1].startswith("3 cross-package private import statement(s) (5 name(s))")


def test_fix_exports_from_the_package_and_keeps_all_sorted(tree, capsys):
    """The public names move to the package's front door; private ones stay put."""
    private_imports.main(["--fix", str(tree)])
    y = (tree / "b" / "_y.py").read_text()
    assert "from klingmon.a import LIMIT, Alpha, Zed" in y
    assert "from klingmon.a._x import _hidden" in y
    assert re.search(r"^from klingmon\.a import .*\b_x\b", y, re.MULTILINE)
    init = (tree / "a" / "__init__.py").read_text()
    (exported,) = (
        ast.literal_eval(node.value)
        for node in ast.parse(init).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__"
    )
    assert exported == ["LIMIT", "Alpha", "Zed", "helper"]
    assert "LIMIT" in init
    assert "Alpha" in init
    assert "2 cross-package private import statement(s)" in capsys.readouterr().out
