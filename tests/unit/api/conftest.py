"""Fixtures for the client unit tests."""

from __future__ import annotations

import pytest
from kling_fakes import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
