"""The simulator keys legacy pools exactly as klingmon's engine does.

Both sides of the wire must name a pool alike, or the engine's per-pool limits
would be learned from another pool's 1303s.
"""

from __future__ import annotations

from typing import Any

import pytest

from klingmon.policy import pool_of
from klingmon.sim._pools import legacy_pool, pool_label


@pytest.mark.parametrize(
    ("endpoint", "body", "pool"),
    [
        ("/v1/videos/text2video", {}, "kling-v1/video"),
        ("/v1/videos/text2video", {"model_name": "kling-v2-6"}, "kling-v2-6/video"),
        ("/v1/videos/image2video", {"model_name": "kling-v3"}, "kling-v3/video"),
        ("/v1/videos/video-extend", {"video_id": "1"}, "kling-v1/video"),
        ("/v1/videos/omni-video", {"model_name": "kling-v3-o"}, "kling-v3-o/video"),
        ("/v1/images/generations", {"n": 4}, "kling-v1/image"),
        ("/v1/images/generations", {"model_name": "kling-v2"}, "kling-v2/image"),
        (
            "/v1/images/kolors-virtual-try-on",
            {"model_name": "kolors-virtual-try-on-v1"},
            "kolors-virtual-try-on-v1/image",
        ),
    ],
)
def test_legacy_pool_is_the_engines_pool(
    endpoint: str, body: dict[str, Any], pool: str
) -> None:
    found, pack = legacy_pool(endpoint, body)
    key = pool_of(endpoint, body)
    assert found == pool == key.label
    assert pack == key.pack


def test_new_pool_label_is_the_engines_label() -> None:
    key = pool_of("/image-generation/kling-3.0", {"n": 3})
    assert pool_label("kling-3.0", "image") == key.label
