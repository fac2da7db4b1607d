"""Batch files with new-generation rows: paths, flat columns placed, warnings."""

from __future__ import annotations

import json

import pytest

from klingmon.api import Generation, GenericRequest, Text2VideoRequest
from klingmon.batchfile import read_batch_file
from klingmon.errors import BadRowsError


def test_flat_csv_columns_land_under_settings_for_the_new_generation(tmp_path):
    """duration, aspect_ratio, resolution, audio, multi_shot go to settings.*."""
    path = tmp_path / "mixed.csv"
    path.write_text(
        "endpoint,prompt,duration,aspect_ratio,resolution,audio,multi_shot\n"
        "/text-to-video/kling-3.0,a fox,8,9:16,1080p,native,true\n"
        "text2video,a boat,10,1:1,,,\n",
        encoding="utf-8",
    )
    new, old = read_batch_file(path)
    assert isinstance(new.request, GenericRequest)
    assert new.request.generation is Generation.V2026
    assert new.request.endpoint_path() == "/text-to-video/kling-3.0"
    assert new.request.body() == {
        "prompt": "a fox",
        "settings": {
            "duration": 8,
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "audio": "native",
            "multi_shot": True,
        },
    }
    assert new.warnings == ()
    assert isinstance(old.request, Text2VideoRequest)
    assert old.request.body() == {
        "prompt": "a boat",
        "duration": "10",
        "aspect_ratio": "1:1",
    }


def test_a_jsonl_row_may_carry_the_body_as_is(tmp_path):
    """Nested settings and fields klingmon never saw pass through unchanged."""
    body = {
        "contents": [{"type": "prompt", "text": "a dancer"}],
        "settings": {"duration": 5, "resolution": "720p"},
        "brand_new_field": {"x": 1},
    }
    path = tmp_path / "omni.jsonl"
    path.write_text(
        json.dumps({"endpoint": "/omni-video/kling-3.0-omni", **body}) + "\n",
        encoding="utf-8",
    )
    [row] = read_batch_file(path)
    assert row.request.endpoint_path() == "/omni-video/kling-3.0-omni"
    assert row.request.body() == body


def test_an_image_rows_count_is_a_number(tmp_path):
    """n in a CSV is read as a whole number, as Kling takes it."""
    path = tmp_path / "img.csv"
    path.write_text(
        "endpoint,prompt,n\n/image-generation/kling-3.0,a cat,4\n", encoding="utf-8"
    )
    [row] = read_batch_file(path)
    assert row.request.body() == {"prompt": "a cat", "n": 4}


def test_doubts_are_warnings_naming_file_and_line_never_refusals(tmp_path):
    """A model the table does not know, or an odd duration, warns per row."""
    path = tmp_path / "doubt.csv"
    path.write_text(
        "endpoint,prompt,duration\n"
        "/text-to-video/kling-3.0,fine,5\n"
        "/text-to-video/kling-9.9,tomorrow's model,5\n"
        "/text-to-video/kling-2.5-turbo,long,12\n",
        encoding="utf-8",
    )
    rows = read_batch_file(path)
    assert len(rows) == 3
    lines = [w for r in rows for w in r.warning_lines(str(path))]
    assert lines == [
        (
            f"{path}:3: model 'kling-9.9' is not in klingmon's capability table; "
            "not checked"
        ),
        f"{path}:4: duration 12 may not be taken by kling-2.5-turbo (5..10 s)",
    ]


def test_an_unknown_column_on_a_new_generation_row_is_refused(tmp_path):
    """Requests pass unknown fields, but a CSV column nobody documented is a typo."""
    path = tmp_path / "typo.csv"
    path.write_text(
        "endpoint,prompt,resolutoin\n/text-to-video/kling-3.0,a fox,1080p\n",
        encoding="utf-8",
    )
    with pytest.raises(BadRowsError) as info:
        read_batch_file(path)
    assert str(info.value) == (
        f"{path}:1: resolutoin: unknown column (did you mean 'resolution'?)"
    )


def test_legacy_only_defaults_skip_new_generation_rows(tmp_path):
    """--model-name and --mode are legacy words; --duration lands in settings."""
    path = tmp_path / "p.jsonl"
    path.write_text(
        '{"endpoint": "/text-to-video/kling-3.0", "prompt": "a"}\n{"prompt": "b"}\n',
        encoding="utf-8",
    )
    defaults = {"model_name": "kling-v1-6", "mode": "pro", "duration": "10"}
    new, old = read_batch_file(path, defaults=defaults)
    assert new.request.body() == {"prompt": "a", "settings": {"duration": 10}}
    assert old.request.body() == {
        "prompt": "b",
        "model_name": "kling-v1-6",
        "mode": "pro",
        "duration": "10",
    }


def test_a_new_generation_endpoint_for_every_row_of_a_text_file(tmp_path):
    """--endpoint /text-to-video/kling-3.0 makes every prompt a new-generation task."""
    path = tmp_path / "p.txt"
    path.write_text("one\ntwo\n", encoding="utf-8")
    rows = read_batch_file(path, endpoint="/text-to-video/kling-3.0")
    assert [r.request.endpoint_path() for r in rows] == ["/text-to-video/kling-3.0"] * 2
    assert rows[0].request.body() == {"prompt": "one"}
