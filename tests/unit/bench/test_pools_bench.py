"""The pools benchmark's own arithmetic: the weighted greedy ideal, the batch."""

from __future__ import annotations

from collections import Counter

from bench.pools import MIX, POOLS, requests, weighted_greedy

from klingmon.policy import pool_of, slots_of


def test_weighted_greedy_packs_by_slots():
    # Two tasks of 4 fit in 10 slots at once; the third waits for the first.
    assert weighted_greedy([10.0, 20.0, 5.0], [4, 4, 4], 10) == 20.0
    assert weighted_greedy([10.0, 20.0, 5.0], [1, 1, 1], 10) == 20.0
    assert weighted_greedy([10.0, 20.0, 5.0], [6, 6, 6], 10) == 35.0
    # A task bigger than the pool runs alone.
    assert weighted_greedy([3.0, 3.0], [12, 1], 10) == 6.0


def test_the_batch_is_the_mix_interleaved_and_klingmon_sees_its_pools():
    batch = requests()
    assert Counter(k.name for k, _ in batch) == {k.name: k.tasks for k in MIX}
    assert [k.name for k, _ in batch[:3]] == [k.name for k in MIX]
    for kind, request in batch:
        assert pool_of(request.task_path, request.payload).label == kind.pool
        assert slots_of(request.task_path, request.payload) == kind.n
    assert {k.pool for k in MIX} == set(POOLS)
