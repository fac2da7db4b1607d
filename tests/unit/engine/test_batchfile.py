"""Submit files: every row validated before anything is stored, errors by line."""

from __future__ import annotations

import json

import pytest

from klingmon.api import Image2VideoRequest, Text2VideoRequest, VideoExtendRequest
from klingmon.batchfile import read_batch_file
from klingmon.errors import InputFileError


def test_text_file_is_a_prompt_a_line_with_no_comment_syntax(tmp_path):
    """Every non-blank line is a prompt, a leading # included; blank lines hold none."""
    path = tmp_path / "prompts.txt"
    path.write_text(
        "#1 bestseller shot\nA fox in snow\n\n  \n  A boat at sea  \n", encoding="utf-8"
    )
    rows = read_batch_file(path, defaults={"mode": "pro", "model_name": None})
    assert [r.line for r in rows] == [1, 2, 5]
    assert all(isinstance(r.request, Text2VideoRequest) for r in rows)
    assert [r.request.body()["prompt"] for r in rows] == [
        "#1 bestseller shot",
        "A fox in snow",
        "A boat at sea",
    ]
    assert rows[0].request.body()["mode"] == "pro"
    assert "model_name" not in rows[0].request.body()


def test_csv_rows_name_their_endpoint_and_fields(tmp_path):
    """A CSV row per task; empty cells are unset, JSON columns are parsed."""
    path = tmp_path / "tasks.csv"
    path.write_text(
        "endpoint,prompt,image,video_id,cfg_scale,camera_control\n"
        'text2video,a fox,,,0.4,"{""type"": ""down_back""}"\n'
        "image2video,moves,https://example.com/a.png,,,\n"
        "video-extend,more,,vid-1,,\n",
        encoding="utf-8",
    )
    rows = read_batch_file(path, defaults={"aspect_ratio": "9:16", "mode": "std"})
    kinds = [type(r.request) for r in rows]
    assert kinds == [Text2VideoRequest, Image2VideoRequest, VideoExtendRequest]
    first = rows[0].request.body()
    assert first["cfg_scale"] == 0.4
    assert first["camera_control"] == {"type": "down_back"}
    assert first["aspect_ratio"] == "9:16"
    assert "aspect_ratio" not in rows[1].request.body()
    assert "mode" not in rows[2].request.body()


def test_jsonl_rows_are_objects(tmp_path):
    """JSON Lines: one object a line, nested fields kept."""
    path = tmp_path / "tasks.jsonl"
    lines = [
        {"prompt": "a", "duration": 10},
        {"endpoint": "image2video", "image": "https://example.com/x.jpg"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    rows = read_batch_file(path)
    assert rows[0].request.body()["duration"] == "10"
    assert isinstance(rows[1].request, Image2VideoRequest)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        (
            "bad.csv",
            "prompt,cfg_scale\nok,0.5\nfine,0.2\nbad,1.5\n",
            "bad.csv:4: cfg_scale",
        ),
        (
            "bad.csv",
            "prompt,colour\nred fox,red\n",
            "bad.csv:1: colour: unknown column",
        ),
        (
            "bad.jsonl",
            '{"prompt": "a"}\n{"prompt": "b"}\n{"prompt": \n',
            "bad.jsonl:3: ",
        ),
        ("bad.jsonl", '{"prompt": "a"}\n["not", "an", "object"]\n', "bad.jsonl:2: "),
        ("bad.txt", "fine\n" + "x" * 2501 + "\n", "bad.txt:2: prompt"),
        (
            "bad.csv",
            "endpoint,prompt\nvideo-extend,no video id\n",
            "bad.csv:2: video_id",
        ),
        ("bad.md", "a prompt\n", "unknown file type '.md'"),
        ("empty.txt", "\n  \n", "empty.txt: no prompts in file"),
    ],
)
def test_a_bad_row_names_file_and_line(tmp_path, name, content, expected):
    """The error is one line with the file, the line number and the field."""
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        read_batch_file(path)
    message = str(info.value)
    assert "\n" not in message
    assert expected in message


def test_broken_encoding_is_reported_with_its_line(tmp_path):
    """Bytes that are not UTF-8 name the line they are on."""
    path = tmp_path / "latin.txt"
    path.write_bytes(b"fine\nalso fine\ncaf\xe9 au lait\n")
    with pytest.raises(InputFileError, match=r"latin\.txt:3: not valid UTF-8"):
        read_batch_file(path)


def test_a_byte_order_mark_is_ignored(tmp_path):
    """Spreadsheets write a BOM; the first column still reads as 'prompt'."""
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffprompt\nA fox\n".encode())
    [row] = read_batch_file(path)
    assert row.request.body()["prompt"] == "A fox"


def test_line_numbers_count_newlines_only(tmp_path):
    """A U+2028 inside a prompt neither splits it nor shifts later line numbers."""
    path = tmp_path / "p.txt"
    path.write_text("one\u2028still one\r\ntwo\n" + "x" * 2600 + "\n", encoding="utf-8")
    with pytest.raises(InputFileError) as info:
        read_batch_file(path)
    assert str(info.value).startswith(f"{path}:3: prompt")
    path.write_text("one\u2028still one\r\ntwo\n", encoding="utf-8")
    rows = read_batch_file(path)
    assert [r.request.body()["prompt"] for r in rows] == ["one\u2028still one", "two"]
