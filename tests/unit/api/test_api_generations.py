"""Naming a task by its path, requests that never refuse what Kling takes, warnings."""

from __future__ import annotations

import pytest

from klingmon.api import (
    CAPABILITIES,
    Generation,
    GenericRequest,
    ModelPath,
    Text2VideoRequest,
    build_request,
    capability_warnings,
    generation_of,
    model_path,
    place_fields,
)
from klingmon.errors import RequestValidationError


@pytest.mark.parametrize(
    ("endpoint", "generation"),
    [
        ("text2video", Generation.LEGACY),
        ("/v1/videos/text2video", Generation.LEGACY),
        ("/v1/images/generations", Generation.LEGACY),
        ("/v1/audio/text-to-audio", Generation.LEGACY),
        ("/text-to-video/kling-2.6", Generation.V2026),
        ("/text-to-video/kling-3.0", Generation.V2026),
        ("/text-to-video/kling-3.0-turbo", Generation.V2026),
        ("/image-to-video/kling-2.5-turbo", Generation.V2026),
        ("/omni-video/kling-3.0-omni", Generation.V2026),
        ("/omni-video/kling-o1", Generation.V2026),
        ("/motion-control/kling-3.0", Generation.V2026),
        # A model Kling adds tomorrow: no release needed.
        ("/text-to-video/kling-4.2-ultra", Generation.V2026),
        ("/storyboard-video/kling-9", Generation.V2026),
        ("/tasks", Generation.V2026),
        ("/account/costs", Generation.V2026),
    ],
)
def test_the_path_tells_the_generation(endpoint, generation):
    """Model in the path is new; /v1/... and short names are legacy."""
    assert generation_of(endpoint) is generation


@pytest.mark.parametrize("endpoint", ["/x", "/a/b/c", "/text-to-video/kling 3", "/"])
def test_malformed_paths_are_refused(endpoint):
    """A path of neither shape is named in the error."""
    with pytest.raises(RequestValidationError, match="neither"):
        generation_of(endpoint)


def test_model_path_splits_family_and_model():
    """The new path's two segments are family and model; others have none."""
    assert model_path("/omni-video/kling-3.0-omni/") == ModelPath(
        "omni-video", "kling-3.0-omni"
    )
    assert model_path("/v1/videos/text2video") is None
    assert model_path("/tasks") is None


# -- requests: never refuse what Kling accepts ---------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"voice_list": [{"voice_id": "v1"}]},
        {"multi_shot": True, "shot_type": "customize"},
        {"multi_prompt": [{"index": 1, "prompt": "a", "duration": "3"}]},
        {"element_list": [{"element_id": 1}]},
        {"sound": "on", "model_name": "kling-v2-6"},
        {"bogus": 1},
    ],
)
def test_legacy_unknown_and_newer_fields_pass_through(extra):
    """Newer legacy fields (and unknown ones) reach the body unchanged."""
    request = build_request("text2video", {"prompt": "p", **extra})
    assert isinstance(request, Text2VideoRequest)
    body = request.body()
    for key, value in extra.items():
        assert body[key] == value


@pytest.mark.parametrize("seconds", [str(s) for s in range(3, 16)])
def test_legacy_kling_v3_takes_three_to_fifteen_seconds(seconds):
    """kling-v3 on the legacy path takes any duration from 3 to 15 s."""
    request = build_request(
        "text2video", {"prompt": "p", "model_name": "kling-v3", "duration": seconds}
    )
    assert request.body()["duration"] == seconds
    assert request.warnings() == []


def test_legacy_unknown_model_duration_passes_with_a_warning():
    """A model the table lacks is sent as is, with one warning."""
    request = build_request(
        "text2video", {"prompt": "p", "model_name": "kling-v4", "duration": "12"}
    )
    assert request.body()["duration"] == "12"
    assert request.warnings() == [
        "model 'kling-v4' is not in klingmon's capability table; not checked"
    ]


def test_documented_durations_still_refuse():
    """kling-v1 (the default) is documented for 5 and 10 only."""
    with pytest.raises(RequestValidationError, match="duration"):
        build_request("text2video", {"prompt": "p", "duration": "7"})
    with pytest.raises(RequestValidationError, match="duration"):
        build_request(
            "text2video",
            {"prompt": "p", "model_name": "kling-v2-master", "duration": "15"},
        )


def test_undocumented_duration_warns_instead_of_refusing():
    """kling-v2-6's durations are not from Kling's docs: 7 s is a warning."""
    request = build_request(
        "text2video", {"prompt": "p", "model_name": "kling-v2-6", "duration": "7"}
    )
    assert request.body()["duration"] == "7"
    assert any("duration" in w for w in request.warnings())


def test_capability_warnings_for_audio_and_camera():
    """Audio on a silent model and camera control where unsupported warn."""
    request = build_request(
        "text2video",
        {
            "prompt": "p",
            "model_name": "kling-v2-master",
            "sound": "on",
            "camera_control": {"type": "down_back"},
        },
    )
    warnings = request.warnings()
    assert any("audio" in w for w in warnings)
    assert any("camera_control" in w for w in warnings)


def test_capability_table_is_data():
    """Every entry's durations are sets of whole seconds, or unknown."""
    for capability in CAPABILITIES.values():
        assert capability.durations is None or all(
            isinstance(s, int) and s > 0 for s in capability.durations
        )


# -- new generation: placement of flat fields ----------------------------------------


def test_flat_fields_land_in_settings_and_options():
    """duration, aspect_ratio, resolution, audio, multi_shot go under settings."""
    request = build_request(
        "/text-to-video/kling-3.0",
        {
            "prompt": "a cat",
            "duration": "12",
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "audio": "native",
            "multi_shot": "true",
            "callback_url": "https://me/cb",
            "external_task_id": "mine-1",
            "voice_list": [{"voice_id": "v"}],
        },
    )
    assert isinstance(request, GenericRequest)
    assert request.generation is Generation.V2026
    assert request.body() == {
        "prompt": "a cat",
        "voice_list": [{"voice_id": "v"}],
        "settings": {
            "duration": 12,
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "audio": "native",
            "multi_shot": True,
        },
        "options": {"callback_url": "https://me/cb", "external_task_id": "mine-1"},
    }
    assert request.external_task_id == "mine-1"
    assert request.warnings() == []


def test_a_body_as_is_keeps_its_nesting():
    """A jsonl row carrying the body as is keeps settings and options."""
    body = {
        "prompt": "p",
        "settings": {"duration": 5, "audio": "off"},
        "options": {"watermark_info": {"enabled": True}},
    }
    assert place_fields("/text-to-video/kling-2.6", body) == body


def test_nested_values_win_over_flat_ones():
    """A value already under settings is not overwritten by a flat column."""
    body = place_fields(
        "/text-to-video/kling-3.0",
        {"prompt": "p", "duration": "5", "settings": {"duration": 8}},
    )
    assert body["settings"] == {"duration": 8}


def test_legacy_fields_stay_flat():
    """Legacy bodies are flat: nothing is moved."""
    fields = {"prompt": "p", "duration": "5", "callback_url": "https://cb"}
    assert place_fields("/v1/videos/omni-video", fields) == fields


def test_with_ids_puts_klingmon_ids_in_options():
    """klingmon's external_task_id and callback_url go in options (new only)."""
    request = build_request("/omni-video/kling-3.0-omni", {"prompt": "p"})
    with_ids = request.with_ids(external_task_id="km-1", callback_url="https://cb")
    assert with_ids.body() == {
        "prompt": "p",
        "options": {"external_task_id": "km-1", "callback_url": "https://cb"},
    }
    assert with_ids.external_task_id == "km-1"
    mine = build_request(
        "/omni-video/kling-3.0-omni", {"prompt": "p", "external_task_id": "mine"}
    )
    kept = mine.with_ids(external_task_id="km-2", callback_url=None)
    assert kept.external_task_id == "mine"


@pytest.mark.parametrize(
    "fields",
    [
        {"prompt": "p", "settings": {"duration": 15}},
        {"prompt": "p", "settings": {"duration": 3}, "element_list": [1]},
        {"prompt": "p", "shiny_new_field": {"x": 1}},
        {"contents": [{"type": "prompt", "prompt": "p"}]},
    ],
)
def test_new_generation_accepts_what_kling_takes(fields):
    """Documented and unknown new-generation fields pass."""
    request = build_request("/text-to-video/kling-3.0", fields)
    assert request.body()["settings" if "settings" in fields else next(iter(fields))]


@pytest.mark.parametrize(
    ("endpoint", "fields", "words"),
    [
        ("/text-to-video/kling-3.0", {}, "prompt is required"),
        ("/text-to-video/kling-3.0", {"prompt": "x" * 2501}, "2500"),
        (
            "/text-to-video/kling-3.0",
            {"prompt": "p", "negative_prompt": "x" * 2501},
            "2500",
        ),
        (
            "/omni-video/kling-3.0-omni",
            {"contents": [{"type": "prompt", "prompt": "x" * 2501}]},
            "contents[0].prompt",
        ),
        ("/image-to-video/kling-3.0", {"image": "A" * 14_000_000}, "10 MB"),
        ("/tasks", {"prompt": "p"}, "query path"),
    ],
)
def test_new_generation_refuses_only_what_is_certain(endpoint, fields, words):
    """Required prompt, 2,500 characters, 10 MB images; query paths are no task."""
    with pytest.raises(RequestValidationError, match=words.replace("[", r"\[")):
        build_request(endpoint, fields)


def test_omni_video_needs_no_prompt():
    """Only text-to-video requires a prompt; other families may use contents."""
    assert build_request("/omni-video/kling-o1", {"contents": []}).body() == {
        "contents": []
    }


def test_new_generation_capability_warnings():
    """A doubtful duration, or native audio at 720p, warns; it is still sent."""
    warnings = capability_warnings(
        "/text-to-video/kling-2.5-turbo",
        {"prompt": "p", "settings": {"duration": 7, "audio": "native"}},
    )
    assert any("duration" in w for w in warnings)
    assert any("1080p" in w for w in warnings)
    assert capability_warnings("/text-to-video/kling-9", {"prompt": "p"}) == [
        "model 'kling-9' is not in klingmon's capability table; not checked"
    ]


def test_new_duration_outside_the_docs_warns():
    """kling-3.0 is documented for 3..15 s: 15 s is clean, 16 s warns (still sent)."""
    assert (
        build_request(
            "/text-to-video/kling-3.0", {"prompt": "p", "duration": "15"}
        ).warnings()
        == []
    )
    warnings = build_request(
        "/text-to-video/kling-3.0", {"prompt": "p", "duration": "16"}
    ).warnings()
    assert any("duration" in w for w in warnings)


@pytest.mark.parametrize(
    ("fields", "name"),
    [
        ({"promt": "a fox"}, "promt"),
        ({"prompt": "p", "durration": "10"}, "durration"),
        ({"prompt": "p", "image": "https://x/a.png"}, "image"),
        ({"prompt": "p", "x\ny": 1}, "x\ny"),
    ],
)
def test_only_likely_mistakes_are_refused(fields, name):
    """A misspelt known field, another endpoint's input, a non-name: refused."""
    with pytest.raises(RequestValidationError, match="Extra inputs"):
        build_request("text2video", fields)
    assert Text2VideoRequest.likely_mistakes(fields) == [name]
