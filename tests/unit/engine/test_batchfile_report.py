"""Submit files: every bad row reported in one pass, with suggestions."""

from __future__ import annotations

import json

import pytest

from klingmon.api import GenericRequest
from klingmon.batchfile import read_batch_file, requests_from_text
from klingmon.errors import BadRowsError, InputFileError


def _problems(path, **kwargs) -> list[str]:
    with pytest.raises(BadRowsError) as info:
        read_batch_file(path, **kwargs)
    assert isinstance(info.value, InputFileError)
    assert info.value.exit_code == 2
    return str(info.value).split("\n")


def test_five_bad_rows_are_reported_at_once(tmp_path):
    """Each bad row is its own line, file:line: field: message, then a count."""
    path = tmp_path / "prompts.csv"
    path.write_text(
        "prompt,mode,cfg_scale,duration\n"
        "fine,std,0.5,5\n"
        "too strong,std,1.5,5\n"
        "odd mode,professional,0.5,5\n"
        "odd length,std,0.5,7\n"
        ",std,0.5,5\n"
        "not a number,std,high,5\n"
        "also fine,pro,,10\n",
        encoding="utf-8",
    )
    name = str(path)
    assert _problems(path) == [
        f"{name}:3: cfg_scale: Input should be less than or equal to 1",
        f"{name}:4: mode: Input should be 'std' or 'pro'",
        f"{name}:5: duration: Input should be '5' or '10'",
        f"{name}:6: prompt: Field required",
        f"{name}:7: cfg_scale: not a number",
        f"{name}: 5 problems on 5 lines; nothing stored",
    ]


def test_the_report_stops_at_the_limit_and_counts_the_rest(tmp_path):
    """Thirty bad rows: the first twenty are shown, the other ten counted."""
    path = tmp_path / "many.jsonl"
    rows = [{"prompt": "ok"}] + [{"prompt": "x", "mode": "fast"}] * 30
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    lines = _problems(path)
    assert len(lines) == 22
    assert lines[0] == f"{path}:2: mode: Input should be 'std' or 'pro'"
    assert lines[19].startswith(f"{path}:21: mode")
    assert lines[20] == "and 10 more"
    assert lines[21] == f"{path}: 30 problems on 30 lines; nothing stored"


def test_a_misspelt_field_gets_a_suggestion_and_no_second_error(tmp_path):
    """'promt' suggests 'prompt'; the missing prompt it explains is not repeated."""
    path = tmp_path / "typo.jsonl"
    path.write_text(
        '{"promt": "a fox"}\n{"prompt": "b", "endpiont": "text2video"}\n',
        encoding="utf-8",
    )
    assert _problems(path) == [
        f"{path}:1: promt: unknown field for text2video (did you mean 'prompt'?)",
        f"{path}:2: endpiont: unknown field for text2video (did you mean 'endpoint'?)",
        f"{path}: 2 problems on 2 lines; nothing stored",
    ]


def test_a_misspelt_csv_column_is_named_once_at_the_header(tmp_path):
    """A column no row may carry is one problem on line 1, not one per row."""
    path = tmp_path / "typo.csv"
    path.write_text("Promt,mode\na fox,std\na boat,pro\n", encoding="utf-8")
    assert _problems(path) == [
        f"{path}:1: Promt: unknown column (did you mean 'prompt'?)"
    ]


def test_a_column_some_rows_may_carry_is_reported_by_row(tmp_path):
    """'image' is right for image2video rows, so only the text2video row is wrong."""
    path = tmp_path / "mixed.csv"
    path.write_text(
        "endpoint,prompt,image\n"
        "image2video,moves,https://example.com/a.png\n"
        "text2video,a fox,https://example.com/b.png\n",
        encoding="utf-8",
    )
    assert _problems(path) == [f"{path}:3: image: unknown field for text2video"]


@pytest.mark.parametrize("delimiter", [";", "\t", "|", ","])
def test_the_csv_delimiter_is_sniffed_from_the_header(tmp_path, delimiter):
    """A semicolon (or tab, or pipe) separated file reads as its columns."""
    path = tmp_path / "tasks.csv"
    rows = [["prompt", "mode", "cfg_scale"], ["a fox, at dawn", "pro", "0.5"]]
    path.write_text(
        "\n".join(delimiter.join(f'"{c}"' if "," in c else c for c in r) for r in rows)
        + "\n",
        encoding="utf-8",
    )
    [row] = read_batch_file(path)
    body = row.request.body()
    assert (body["prompt"], body["mode"], body["cfg_scale"]) == (
        "a fox, at dawn",
        "pro",
        0.5,
    )


def test_a_one_column_csv_keeps_its_commas_in_quotes(tmp_path):
    """A header with no delimiter is one column; quoted cells keep their commas."""
    path = tmp_path / "one.csv"
    path.write_text('prompt\n"a fox; then, a boat"\n', encoding="utf-8")
    [row] = read_batch_file(path)
    assert row.request.body()["prompt"] == "a fox; then, a boat"


def test_a_missing_file_says_so_without_a_line(tmp_path):
    """'prompts.csv: No such file', not 'line 0'."""
    path = tmp_path / "prompts.csv"
    assert _problems(path) == [f"{path}: No such file"]
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert _problems(folder) == [f"{folder}: is a folder, not a file"]


def test_every_line_that_is_not_utf8_is_named(tmp_path):
    """Two broken lines, two problems."""
    path = tmp_path / "latin.txt"
    path.write_bytes(b"caf\xe9\nfine\nna\xefve\n")
    assert _problems(path)[:2] == [
        f"{path}:1: not valid UTF-8 text",
        f"{path}:3: not valid UTF-8 text",
    ]


def test_a_bad_default_is_reported_once_for_the_file(tmp_path):
    """A wrong --mode is one problem, not one per row."""
    path = tmp_path / "p.txt"
    path.write_text("a\nb\nc\n", encoding="utf-8")
    assert _problems(path, defaults={"mode": "ultra"}) == [
        f"{path}: mode (the default for every row): Input should be 'std' or 'pro'"
    ]


def test_fields_of_other_endpoints_pass_through(tmp_path):
    """Klingmon does not model every endpoint: their fields go to Kling as given."""
    path = tmp_path / "lips.jsonl"
    rows = [
        {"endpoint": "lip-sync", "input": {"video_id": "v1", "mode": "text2video"}},
        {"endpoint": "/v1/videos/effects", "effect_scene": "hug", "colour": "red"},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    first, second = read_batch_file(path)
    assert isinstance(first.request, GenericRequest)
    assert first.request.endpoint_path() == "/v1/videos/lip-sync"
    assert second.request.body() == {"effect_scene": "hug", "colour": "red"}


def test_a_field_name_cannot_break_the_one_line_per_problem_rule(tmp_path):
    """A key with a newline in it is quoted with escapes."""
    path = tmp_path / "evil.jsonl"
    path.write_text(json.dumps({"prompt": "a", "x\ny": 1}) + "\n", encoding="utf-8")
    assert _problems(path) == [f"{path}:1: 'x\\ny': unknown field for text2video"]


def test_a_cell_under_a_nameless_column_is_not_dropped(tmp_path):
    """A value with no header above it is reported, not silently ignored."""
    path = tmp_path / "gap.csv"
    path.write_text("prompt,,mode\na fox,pro,std\n", encoding="utf-8")
    assert _problems(path) == [
        f"{path}:2: a cell under a column with no name in the header"
    ]


def test_text_from_stdin_keeps_lines_starting_with_a_hash():
    """requests_from_text has no comment syntax either."""
    rows = requests_from_text("#1 bestseller shot\n\n# second\n")
    assert [(r.line, r.request.body()["prompt"]) for r in rows] == [
        (1, "#1 bestseller shot"),
        (3, "# second"),
    ]
