"""Engine settings: every broken limit named at construction, as a ConfigError."""

from __future__ import annotations

import pytest

from klingmon.engine import EngineSettings
from klingmon.errors import ConfigError


def test_every_broken_limit_is_named():
    """Three wrong values, one error naming all three (exit 2 in the CLI)."""
    with pytest.raises(ConfigError) as info:
        EngineSettings(slots=0, page_size=501, submit_backoff_cap=0.5)
    assert str(info.value) == (
        "EngineSettings slots: must be at least 1; page_size: must be within 1..500; "
        "submit_backoff_cap: must be at least submit_backoff_base"
    )
    assert info.value.exit_code == 2


def test_the_defaults_hold():
    """The documented defaults pass their own checks."""
    assert EngineSettings().slots == 5
