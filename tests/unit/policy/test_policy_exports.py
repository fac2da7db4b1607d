"""klingmon.policy exports every public name, sorted."""

from __future__ import annotations

import klingmon.policy
from klingmon.policy import (
    _account,
    _consequences,
    _durations,
    _errors,
    _governor,
    _lifecycle,
    _moderation,
    _overdue,
    _pools,
    _prices,
    _priority,
    _quote,
    _repeats,
    _schedule,
    _spend,
    _stuck,
)


def test_all_is_sorted_and_complete():
    """__all__ is sorted and holds every module's public names."""
    exported = klingmon.policy.__all__
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    modules = (
        _account,
        _consequences,
        _durations,
        _errors,
        _governor,
        _lifecycle,
        _moderation,
        _overdue,
        _pools,
        _priority,
        _prices,
        _quote,
        _repeats,
        _schedule,
        _spend,
        _stuck,
    )
    public = {name for m in modules for name in m.__all__}
    internal = {"BUCKETS", "HIGH", "LOW", "PRIOR_WEIGHT"}
    assert public - internal == set(exported)
    for name in exported:
        assert getattr(klingmon.policy, name) is not None
