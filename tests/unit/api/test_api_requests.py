"""Request models refuse what Kling documents as invalid, before anything is sent."""

from __future__ import annotations

import base64

import pytest

from klingmon.api import (
    GenericRequest,
    Image2VideoRequest,
    Text2VideoRequest,
    VideoExtendRequest,
    build_request,
    encode_image,
)
from klingmon.errors import RequestValidationError

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
SIMPLE = {"type": "simple", "config": {"zoom": 5}}


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"prompt": "x" * 2501}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "p", "negative_prompt": "x" * 2501}, "negative_prompt"),
        ({"prompt": "p", "duration": "7"}, "duration"),
        ({"prompt": "p", "duration": 5}, "duration"),
        ({"prompt": "p", "cfg_scale": 1.5}, "cfg_scale"),
        ({"prompt": "p", "mode": "professional"}, "mode"),
        ({"prompt": "p", "aspect_ratio": "4:3"}, "aspect_ratio"),
        ({"prompt": "p", "camera_control": {"type": "simple"}}, "camera_control"),
        (
            {
                "prompt": "p",
                "camera_control": {"type": "simple", "config": {"zoom": 1, "pan": 1}},
            },
            "camera_control",
        ),
        (
            {"prompt": "p", "camera_control": {"type": "simple", "config": {}}},
            "camera_control",
        ),
        (
            {
                "prompt": "p",
                "camera_control": {"type": "down_back", "config": {"zoom": 1}},
            },
            "camera_control",
        ),
        (
            {
                "prompt": "p",
                "camera_control": {"type": "simple", "config": {"zoom": 11}},
            },
            "camera_control",
        ),
    ],
)
def test_text2video_limits(fields, where):
    """Each documented text2video limit is enforced and the field is named."""
    with pytest.raises(RequestValidationError) as info:
        build_request("text2video", fields)
    assert where in str(info.value)


def test_text2video_valid_body():
    """A valid request's body holds only the fields that were set."""
    request = build_request(
        "text2video",
        {"prompt": "p", "duration": "10", "cfg_scale": 0.5, "camera_control": SIMPLE},
    )
    assert isinstance(request, Text2VideoRequest)
    assert request.body() == {
        "prompt": "p",
        "duration": "10",
        "cfg_scale": 0.5,
        "camera_control": {
            "type": "simple",
            "config": {
                "horizontal": 0,
                "vertical": 0,
                "pan": 0,
                "tilt": 0,
                "roll": 0,
                "zoom": 5,
            },
        },
    }


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {
            "image": "https://x/a.png",
            "image_tail": "https://x/b.png",
            "camera_control": SIMPLE,
        },
        {
            "image": "https://x/a.png",
            "static_mask": "https://x/m.png",
            "camera_control": SIMPLE,
        },
        {
            "image": "https://x/a.png",
            "image_tail": "https://x/b.png",
            "static_mask": "https://x/m.png",
        },
        {"image": "https://x/a.png", "image_tail": "https://x/b.png", "duration": "10"},
        {"image": "not an image at all!"},
    ],
)
def test_image2video_exclusivity(fields):
    """End frame, masks and camera_control exclude each other; an image is needed."""
    with pytest.raises(RequestValidationError):
        build_request("image2video", fields)


def test_image_as_url_base64_data_uri_and_file(tmp_path):
    """An image stays a URL or base64, loses a data: prefix, or is read from a file."""
    assert encode_image("https://x/a.png") == "https://x/a.png"
    assert encode_image(PNG) == PNG
    assert encode_image(f"data:image/png;base64,{PNG}") == PNG
    path = tmp_path / "frame.png"
    path.write_bytes(b"\x89PNG-bytes")
    expected = base64.b64encode(b"\x89PNG-bytes").decode()
    assert encode_image(str(path)) == expected
    assert encode_image(path) == expected
    request = build_request("image2video", {"image": str(path), "prompt": "go"})
    assert isinstance(request, Image2VideoRequest)
    assert request.body()["image"] == expected


def test_image_too_large(tmp_path):
    """An image file over 10 MB is refused."""
    path = tmp_path / "big.png"
    path.write_bytes(b"\0" * (10 * 1024 * 1024 + 1))
    with pytest.raises(RequestValidationError):
        encode_image(str(path))


def test_video_extend_needs_video_id():
    """video-extend requires video_id."""
    with pytest.raises(RequestValidationError):
        build_request("video-extend", {"prompt": "more"})
    request = build_request("video-extend", {"video_id": "v-1"})
    assert isinstance(request, VideoExtendRequest)


def test_generic_path_and_ids():
    """Other paths pass their payload through; with_ids fills only what is missing."""
    request = build_request("/v1/images/generations", {"prompt": "p", "n": 2})
    assert isinstance(request, GenericRequest)
    assert request.endpoint_path() == "/v1/images/generations"
    with_ids = request.with_ids(external_task_id="km-1", callback_url="https://cb")
    assert with_ids.body() == {
        "prompt": "p",
        "n": 2,
        "external_task_id": "km-1",
        "callback_url": "https://cb",
    }
    mine = Text2VideoRequest(prompt="p", external_task_id="mine")
    assert (
        mine.with_ids(external_task_id="km-2", callback_url=None).external_task_id
        == "mine"
    )
