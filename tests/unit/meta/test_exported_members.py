"""The public API: every public name is exported, sorted, and importable."""

from __future__ import annotations

import importlib

import pytest

import klingmon

PACKAGES = [
    "klingmon",
    "klingmon.api",
    "klingmon.engine",
    "klingmon.policy",
    "klingmon.sim",
    "klingmon.store",
    "klingmon.web",
]


def _isort_style(name: str) -> tuple[int, str]:
    """The order ruff's RUF022 keeps: CONSTANTS, then Classes, then functions."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[:1].isupper() else (2, name)


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_resolves(name):
    """Each package's __all__ is sorted and names only things it has."""
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__, key=_isort_style)
    for member in module.__all__:
        assert hasattr(module, member), member


def test_top_level_exports_every_public_name():
    """Nothing public at the top level is left out of __all__."""
    public = {
        n
        for n, v in vars(klingmon).items()
        if not n.startswith("_") and not isinstance(v, type(klingmon))
    }
    assert public - {"annotations"} == set(klingmon.__all__)
