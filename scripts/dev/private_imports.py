"""List, and with ``--fix`` rewrite, imports of another package's private module.

``from klingmon.store._views import Row`` in ``klingmon.web`` reaches past
``klingmon.store``'s front door; ``from klingmon.store import _views`` does too. A
private module (a name component starting with ``_``) belongs to its parent package,
and only modules inside that package may import it: the rule of import-linter's
``private-modules`` contract. This script finds the same imports statement by
statement, so that they can be counted and fixed in bulk.

``--fix`` rewrites ``from klingmon.x._y import A`` to ``from klingmon.x import A``
and, when ``klingmon/x/__init__.py`` does not export ``A`` yet, imports it there and
adds it to ``__all__``, in the order ruff's RUF022 (and
tests/unit/meta/test_exported_members.py) want. Private names (``_helper``), module
imports (``from klingmon.x import _y``) and the pairs in ``KEPT`` are listed, never
fixed: making them public is a decision, not a rewrite.

    python scripts/dev/private_imports.py                 # list, whole tree
    python scripts/dev/private_imports.py --fix src/klingmon/cli src/klingmon/hooks
"""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
PACKAGE = "klingmon"

# Imports that stay as they are, each for a reason; the same pairs are the
# ``ignore_imports`` of the ``private-modules`` contract in pyproject.toml.
KEPT = {
    ("klingmon.cli._context", "klingmon.callback_tokens"): (
        "lazy on purpose: klingmon.web's __init__ pulls in FastAPI, which `submit`"
        " with a public URL does not need; the token maths belongs below the fronts"
    ),
}


@dataclass(frozen=True)
class Finding:
    """One import statement that reaches into another package's private module."""

    path: Path
    line: int
    importer: str  # dotted name of the importing module
    module: str  # the module written after ``from``
    package: str  # the public package that owns the private module
    names: tuple[tuple[str, str | None], ...]  # (name, asname)
    kind: str  # "names": fixable shape; "module": ``from pkg import _mod``

    def kept(self) -> str | None:
        """Why this import stays, if it does."""
        return KEPT.get((self.importer, self.module))

    def fixable(self) -> bool:
        """Whether --fix may rewrite it."""
        return self.kind == "names" and not self.private_names() and not self.kept()

    def private_names(self) -> list[str]:
        """Names that are private themselves: they stay where they are."""
        return [name for name, _ in self.names if name.startswith("_")]

    def render(self) -> str:
        """One line per statement, as a compiler would print it."""
        names = ", ".join(n if a is None else f"{n} as {a}" for n, a in self.names)
        rel = self.path.relative_to(ROOT)
        return f"{rel}:{self.line}: from {self.module} import {names}"


def module_name(path: Path) -> str:
    """The dotted module name of a file under ``src/``."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def owner(dotted: str) -> str | None:
    """The package a private module belongs to, or None if ``dotted`` is public."""
    parts = dotted.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def inside(importer: str, package: str) -> bool:
    """Whether the module ``importer`` lives in ``package`` (or is it)."""
    return importer == package or importer.startswith(package + ".")


def is_module(dotted: str) -> bool:
    """Whether ``dotted`` names a module or package of the source tree."""
    base = SRC.joinpath(*dotted.split("."))
    return base.with_suffix(".py").exists() or (base / "__init__.py").exists()


def absolute(node: ast.ImportFrom, importer: str, is_package: bool) -> str:
    """The absolute module name of a (possibly relative) ``from`` import."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    drop = node.level - 1 if is_package else node.level
    base = base[: len(base) - drop] if drop else base
    return ".".join([*base, node.module] if node.module else base)


def scan(path: Path) -> list[Finding]:
    """The cross-package private imports of one file."""
    importer = module_name(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[Finding] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom):
            continue
        module = absolute(node, importer, path.name == "__init__.py")
        if not module.startswith(PACKAGE):
            continue
        names = tuple((alias.name, alias.asname) for alias in node.names)
        package = owner(module)
        if package is not None and not inside(importer, package):
            found.append(
                Finding(path, node.lineno, importer, module, package, names, "names")
            )
            continue
        if package is None and not inside(importer, module):
            submodules = tuple(
                (name, asname)
                for name, asname in names
                if name.startswith("_") and is_module(f"{module}.{name}")
            )
            if submodules:
                found.append(
                    Finding(
                        path,
                        node.lineno,
                        importer,
                        module,
                        module,
                        submodules,
                        "module",
                    )
                )
    return found


def sources(paths: list[Path]) -> list[Path]:
    """Every ``.py`` file under the given files or folders, sorted."""
    files: set[Path] = set()
    for path in paths:
        resolved = path.resolve()
        files.update(resolved.rglob("*.py") if resolved.is_dir() else [resolved])
    return sorted(f for f in files if f.is_relative_to(SRC))


def isort_key(name: str) -> tuple[int, str]:
    """The order RUF022 keeps: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


ALL_RE = re.compile(r"^__all__\s*=\s*\[.*?\]\n", re.DOTALL | re.MULTILINE)


def export(package: str, module: str, name: str) -> bool:
    """Make ``package`` import ``name`` from ``module`` and list it in ``__all__``.

    Returns whether the package's ``__init__`` changed.
    """
    init = SRC.joinpath(*package.split("."), "__init__.py")
    text = init.read_text()
    tree = ast.parse(text)
    exported: list[str] = []
    bound: set[str] = set()
    last_import = 0
    for node in tree.body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            last_import = node.end_lineno or node.lineno
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            exported = list(ast.literal_eval(node.value))
        if isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
            bound.add(node.name)
    if name in exported and name in bound:
        return False
    lines = text.splitlines(keepends=True)
    if name not in bound:
        lines.insert(last_import, f"from {module} import {name}\n")
    text = "".join(lines)
    names = sorted({*exported, name}, key=isort_key)
    block = "__all__ = [\n" + "".join(f'    "{n}",\n' for n in names) + "]\n"
    text = ALL_RE.sub(block, text, count=1) if ALL_RE.search(text) else text + block
    init.write_text(text)
    return True


def fix(finding: Finding) -> Path | None:
    """Point one import at the package's front door; return the ``__init__`` touched."""
    if not finding.fixable():
        return None
    touched = None
    for name, _ in finding.names:
        if export(finding.package, finding.module, name):
            touched = SRC.joinpath(*finding.package.split("."), "__init__.py")
    lines = finding.path.read_text().splitlines(keepends=True)
    index = finding.line - 1
    pattern = re.compile(rf"\bfrom\s+{re.escape(finding.module)}\s+import\b")
    replaced, count = pattern.subn(f"from {finding.package} import", lines[index])
    if not count:
        # A relative import (``from .._y import``) keeps its spelling: absolutise it.
        replaced, count = re.subn(
            r"\bfrom\s+\.+[\w.]*\s+import\b",
            f"from {finding.package} import",
            lines[index],
        )
    if count:
        lines[index] = replaced
        finding.path.write_text("".join(lines))
    return touched


def tidy(paths: set[Path]) -> None:
    """Let ruff merge the new imports with their neighbours and format the files."""
    if not paths:
        return
    names = [str(p) for p in sorted(paths)]
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--fix", "--select", "I", *names], check=False)
    subprocess.run([*ruff, "format", *names], check=False)


def main(argv: list[str] | None = None) -> int:
    """List every finding; with --fix, rewrite those in the given paths."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[SRC / PACKAGE])
    parser.add_argument("--fix", action="store_true", help="rewrite what can be")
    parser.add_argument("--count", action="store_true", help="print the count only")
    args = parser.parse_args(argv)
    findings = [f for path in sources(args.paths) for f in scan(path)]
    if args.fix:
        touched: set[Path] = set()
        for finding in sorted(findings, key=lambda f: (f.path, -f.line)):
            init = fix(finding)
            if finding.fixable():
                touched.add(finding.path)
                if init is not None:
                    touched.add(init)
        tidy(touched)
        # Read again: ruff may have merged statements, which moves lines.
        findings = [f for path in sources(args.paths) for f in scan(path)]
    if not args.count:
        for finding in findings:
            note = ""
            if finding.kept():
                note = f"  (kept: {finding.kept()})"
            elif finding.kind == "module":
                note = "  (module import: rewrite by hand)"
            elif finding.private_names():
                note = f"  (private: {', '.join(finding.private_names())})"
            print(finding.render() + note)
    names = sum(len(f.names) for f in findings)
    kept_count = sum(1 for f in findings if f.kept())
    print(
        f"{len(findings)} cross-package private import statement(s)"
        f" ({names} name(s)), {kept_count} kept on purpose"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
