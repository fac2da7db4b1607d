"""Shared fixtures; reusable helpers live in klingmon.testing, not here."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer

# CI must be repeatable: the same examples every run (a found bug is still found by
# developers' random runs, and its example is then pinned in a test).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

if TYPE_CHECKING:
    from collections.abc import Iterator


def _rank(item: pytest.Item) -> int:
    """The longest first: end-to-end runs marked slow, other end-to-end runs,
    integration, then unit tests."""
    path = item.path.as_posix()
    if "/tests/e2e/" in path:
        return 0 if item.get_closest_marker("slow") else 1
    return 2 if "/tests/integration/" in path else 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Hand the longest tests out first (``--dist load --maxschedchunk 1`` deals
    them one by one in this order to whichever worker is free): started last, one
    of them alone kept the whole suite waiting minutes after every other worker
    had finished."""
    items.sort(key=_rank)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's Kling or klingmon settings.

    ``KLINGMON_TEST_*`` (where the test databases are) is the harness's own and stays.
    """
    for name in list(os.environ):
        if name.startswith(("KLING_", "KLINGMON_")) and not name.startswith(
            "KLINGMON_TEST_"
        ):
            monkeypatch.delenv(name)


@pytest.fixture
def sim_server() -> Iterator[SimServer]:
    """A simulator on loopback whose tasks finish within about a second."""
    config = SimConfig(
        admin=True, seed=1234, time_scale=1000.0, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as server:
        yield server
