"""Pools of several accounts: the waiting room of a batch on several, its members,
account names, and each account's own size."""

from __future__ import annotations

import pytest

from klingmon.policy import (
    PoolKey,
    PoolLimits,
    account_problem,
    parse_pool,
    pool_members,
    spread_pool,
)

KEY = PoolKey("default", "kling-3.0", "video")


def test_one_account_waits_in_its_own_pool_several_in_their_shared_queue():
    assert spread_pool(["default"], KEY) == "kling-3.0/video"
    assert spread_pool(["studio"], KEY) == "studio:kling-3.0/video"
    assert spread_pool([], KEY) == "kling-3.0/video"
    assert spread_pool(["b", "a", "b"], KEY) == "a+b:kling-3.0/video"


def test_a_shared_queue_stands_for_each_account_s_pool():
    assert pool_members("a+default:kling-3.0/image") == [
        "a:kling-3.0/image",
        "kling-3.0/image",
    ]
    assert pool_members("a:kling-3.0/video") == ["a:kling-3.0/video"]
    assert pool_members("kling-3.0/video") == ["kling-3.0/video"]
    for label in pool_members("a+b:kling-2.6/video"):
        assert parse_pool(label).model == "kling-2.6"


@pytest.mark.parametrize("name", ["studio", "Agency2", "a_b"])
def test_good_account_names(name):
    assert account_problem(name) is None


@pytest.mark.parametrize("name", ["", "my-studio", "2nd", "a+b", "a:b", "x" * 41])
def test_names_that_would_break_a_label_or_a_variable(name):
    assert account_problem(name) is not None


def test_an_account_s_slots_size_its_pools_not_otherwise_sized():
    limits = PoolLimits(
        default=5,
        sizes={"kling-3.0/image": 10, "b:kling-3.0/video": 2},
        accounts={"a": 3, "b": 4},
    )
    assert limits.size("a:kling-3.0/video") == 3  # its account's slots
    assert limits.size("b:kling-3.0/video") == 2  # its exact label
    assert limits.size("b:kling-2.6/video") == 4
    assert limits.size("a:kling-3.0/image") == 10  # MODEL/PACK, any account
    assert limits.size("c:kling-3.0/video") == 5  # no slots of its own
    assert limits.size("kling-3.0/video") == 5
    assert limits.limit("a:kling-3.0/video") == 3
