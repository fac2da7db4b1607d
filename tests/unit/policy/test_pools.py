"""Concurrency pools: which pool a create takes, how many slots, and the limits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

import klingmon.policy
from klingmon.policy import (
    DEFAULT_ACCOUNT,
    PoolKey,
    PoolLimits,
    _pools,
    parse_pool,
    pool_of,
    slots_of,
)


@pytest.mark.parametrize(
    ("endpoint", "body", "label", "slots"),
    [
        ("/text-to-video/kling-3.0", {}, "kling-3.0/video", 1),
        ("/image-to-video/kling-2.6", {"n": 4}, "kling-2.6/video", 1),
        ("/image-generation/kling-3.0", {"n": 4}, "kling-3.0/image", 4),
        ("/omni-image/kling-o1", {"settings": {"n": 9}}, "kling-o1/image", 9),
        ("/image-generation/kling-3.0", {}, "kling-3.0/image", 1),
        ("/image-generation/kling-3.0", {"n": "3"}, "kling-3.0/image", 3),
        ("/image-generation/kling-3.0", {"n": True}, "kling-3.0/image", 1),
        ("/image-generation/kling-3.0", {"n": 0}, "kling-3.0/image", 1),
        ("/virtual-try-on/kling-v1", {"n": 4}, "kling-v1/image", 1),
        ("/v1/videos/text2video", {}, "kling-v1/video", 1),
        ("/v1/videos/text2video", {"model_name": "kling-v3"}, "kling-v3/video", 1),
        ("text2video", {"model_name": "kling-v2-6"}, "kling-v2-6/video", 1),
        ("/v1/images/generations", {"n": 2}, "kling-v1/image", 2),
        # A model nobody has heard of yet: its own pool, sent all the same.
        ("/text-to-video/kling-9.0-next", {}, "kling-9.0-next/video", 1),
        ("/brand-new-family/kling-4.0", {}, "kling-4.0/video", 1),
    ],
)
def test_pool_and_slots_of_a_create(endpoint, body, label, slots):
    assert pool_of(endpoint, body).label == label
    assert slots_of(endpoint, body) == slots


def test_the_account_is_part_of_the_key():
    key = pool_of("/text-to-video/kling-3.0", {}, account="studio-b")
    assert key == PoolKey("studio-b", "kling-3.0", "video")
    assert key.label == "studio-b:kling-3.0/video"
    assert parse_pool(key.label) == key
    assert pool_of("/text-to-video/kling-3.0", {}).account == DEFAULT_ACCOUNT


@pytest.mark.parametrize(
    "label", ["kling-3.0", "kling-3.0/audio", "/video", ":a/video"]
)
def test_malformed_labels_are_refused(label):
    with pytest.raises(ValueError, match="MODEL/video"):
        parse_pool(label)


_MODEL = st.from_regex(r"[a-z0-9][a-z0-9.\-]{0,20}", fullmatch=True)


@given(
    account=st.one_of(st.just(DEFAULT_ACCOUNT), _MODEL),
    model=_MODEL,
    pack=st.sampled_from(["video", "image"]),
)
def test_labels_round_trip(account, model, pack):
    key = PoolKey(account, model, pack)
    assert parse_pool(key.label) == key


@given(n=st.integers(min_value=1, max_value=50), top=st.booleans())
def test_an_image_task_takes_its_n(n, top):
    body = {"n": n} if top else {"settings": {"n": n}}
    assert slots_of("/image-generation/kling-3.0", body) == n
    assert slots_of("/text-to-video/kling-3.0", body) == 1


def test_a_1303_shrinks_one_pool_only():
    limits = PoolLimits(default=5, sizes={"kling-3.0/image": 10})
    assert limits.limit("kling-3.0/image") == 10
    assert limits.limit("kling-2.6/video") == 5
    limits.on_concurrency_error("kling-3.0/video", 3)
    assert limits.limit("kling-3.0/video") == 3
    assert limits.limit("kling-2.6/video") == 5
    assert limits.limit("kling-3.0/image") == 10
    for _ in range(3):  # three of its tasks end: one slot back, to that pool
        limits.on_task_finished("kling-3.0/video")
    assert limits.limit("kling-3.0/video") == 4
    assert limits.limits() == {
        "kling-2.6/video": 5,
        "kling-3.0/image": 10,
        "kling-3.0/video": 4,
    }


def test_a_size_for_any_account_applies_to_each():
    limits = PoolLimits(default=5, sizes={"kling-3.0/video": 8, "b:kling-3.0/video": 2})
    assert limits.size("kling-3.0/video") == 8
    assert limits.size("a:kling-3.0/video") == 8
    assert limits.size("b:kling-3.0/video") == 2
    assert limits.size("not a label") == 5


def test_the_account_as_a_whole_moves_every_pool():
    limits = PoolLimits(default=5)
    limits.limit("kling-3.0/video")
    limits.on_concurrency_error(None, 2)
    assert limits.limit("kling-3.0/video") == 2
    assert limits.limit("kling-2.6/video") == 2  # a new pool starts from the account's
    assert limits.template.limit == 2


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        PoolLimits(default=5, sizes={"kling-3.0/video": 0})
    with pytest.raises(ValueError, match="MODEL/video"):
        PoolLimits(default=5, sizes={"kling-3.0": 5})


def test_the_names_are_exported():
    assert set(_pools.__all__) <= set(klingmon.policy.__all__)
