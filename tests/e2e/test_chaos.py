"""The chaos run in its CI size: 120 tasks under faults, 5 SIGKILLs and 2 SIGTERMs,
one SIGKILL around lost create answers and one restore from an older copy."""

from __future__ import annotations

import pytest
from scripts.chaos import run_chaos


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_chaos_loses_nothing_and_pays_nothing_twice():
    """Every task as Kling ended it, one create each, every result home, keyed hooks."""
    figures = run_chaos(
        tasks=120, kills=5, terms=2, lost=1, restore=True, seed=3, settle=240
    )
    assert figures["checks"] == dict.fromkeys(figures["checks"], True), figures
    assert figures["answers_5xx"] > 0  # the faults really were on
    assert figures["answers_1302"] > 0
    assert figures["callbacks"].get("dropped", 0) > 0
    assert figures["restores"] == 1
    assert figures["duplicate_creates_refused"] > 0  # the restore re-sent some
