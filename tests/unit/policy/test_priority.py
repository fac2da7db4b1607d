"""The priority rule: levels by effective priority, ties to the longer wait."""

from __future__ import annotations

import pytest

from klingmon.policy import Waiting, effective_priority, level_order

STEP = 600_000


def test_effective_priority_grows_one_per_whole_step():
    assert effective_priority(3, 0, STEP - 1, STEP) == 3
    assert effective_priority(3, 0, STEP, STEP) == 4
    assert effective_priority(3, 0, 5 * STEP + 7, STEP) == 8
    # A clock behind the stored time (another worker's) never lowers it.
    assert effective_priority(3, 10, 0, STEP) == 3
    with pytest.raises(ValueError, match="aging_ms must be positive, not 0"):
        effective_priority(0, 0, 0, 0)


def test_levels_go_by_priority_and_keep_batches_in_id_order():
    waiting = [
        Waiting(4, 0, 40, 90),
        Waiting(2, 5, 20, None),
        Waiting(1, 0, 10, 80),
        Waiting(3, 5, 30, None),
    ]
    assert level_order(waiting, 100, STEP) == [[2, 3], [1, 4]]


def test_a_level_waits_since_its_last_slot_else_its_oldest_batch():
    # Level 0 last got a slot at 0 (batch 1); batch 2 came later and never had one:
    # the level still waits since 0, so at two steps it ties with 2 and goes first.
    waiting = [
        Waiting(1, 0, 0, 0),
        Waiting(2, 0, STEP, None),
        Waiting(3, 2, 0, 2 * STEP),
    ]
    assert level_order(waiting, 2 * STEP, STEP) == [[1, 2], [3]]
    assert level_order(waiting, 2 * STEP - 1, STEP) == [[3], [1, 2]]
    never = [Waiting(1, 0, 0, None), Waiting(2, 0, 3 * STEP, None)]
    assert level_order([*never, Waiting(3, 3, 0, 3 * STEP)], 3 * STEP, STEP)[0] == [
        1,
        2,
    ]
