"""Hostile submit files: every problem on a line naming its line, or all accepted."""

from __future__ import annotations

import csv
import io
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klingmon.batchfile import read_batch_file
from klingmon.errors import InputFileError

#: After the file name: ``:17: field: message``, one problem a line.
_LINE_ERROR = re.compile(r"^:\d+: \S.*$")
#: Or a problem of the whole file, or the closing count of several.
_FILE_ERRORS = re.compile(
    r"^: (no (prompts|tasks) in file|no header row|\d+ problems.*)$"
)

_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=60
)
_prompt = st.one_of(
    _text,
    st.text(min_size=2490, max_size=2510, alphabet="ab \u00e9\u4e2d"),
    st.sampled_from(
        ["\u202e evil", "\ufeffbom", "line\u2028sep", "tab\there", "\x00nul"]
    ),
)


def _check(path, raw: bytes, rows_expected: int | None) -> None:
    path.write_bytes(raw)
    try:
        rows = read_batch_file(path)
    except InputFileError as exc:
        lines = str(exc).split("\n")
        assert lines
        for line in lines:
            if line.startswith("and "):
                continue
            assert line.startswith(f"{path}:"), line
            rest = line.removeprefix(f"{path}")
            assert _LINE_ERROR.match(rest) or _FILE_ERRORS.match(rest), line
        return
    assert rows
    if rows_expected is not None:
        assert len(rows) == rows_expected
    lines = [r.line for r in rows]
    assert lines == sorted(set(lines))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(prompts=st.lists(_prompt, min_size=1, max_size=8), junk=st.binary(max_size=40))
def test_text_files(tmp_path, prompts, junk):
    """Any text file, even with broken bytes, is rejected by line or read whole."""
    body = "\n".join(prompts).encode("utf-8", "surrogatepass") + junk
    _check(tmp_path / "p.txt", body, None)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    rows=st.lists(
        st.fixed_dictionaries(
            {"prompt": _prompt},
            optional={
                "cfg_scale": st.one_of(st.floats(allow_nan=True), _text),
                "duration": st.sampled_from(["5", "10", "7", "", "five"]),
                "mode": st.sampled_from(["std", "pro", "professional", ""]),
                "colour": _text,
            },
        ),
        min_size=1,
        max_size=6,
    )
)
def test_csv_files(tmp_path, rows):
    """CSV with odd cells, unknown columns and bad values: by line, or whole."""
    out = io.StringIO()
    columns = sorted({k for r in rows for k in r})
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
    _check(tmp_path / "t.csv", out.getvalue().encode("utf-8", "surrogatepass"), None)


_json_value = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | _text,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(_text, inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    objects=st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"prompt": _prompt}, optional={"camera_control": _json_value}
            ),
            _json_value,
        ),
        min_size=1,
        max_size=6,
    ),
    cut=st.integers(min_value=0, max_value=400),
)
def test_jsonl_files(tmp_path, objects, cut):
    """JSON Lines with wrong types, non-objects, a truncated tail: by line, or whole."""
    text = "\n".join(json.dumps(o) for o in objects)
    text = text[: len(text) - cut] if cut < len(text) else text
    _check(tmp_path / "t.jsonl", text.encode("utf-8", "surrogatepass"), None)


_cell = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    min_size=1,
    max_size=40,
).filter(lambda t: t.strip() == t and t.strip())


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    prompts=st.lists(_cell, min_size=1, max_size=5),
    modes=st.lists(st.sampled_from(["std", "pro"]), min_size=5, max_size=5),
)
def test_csv_files_read_back_whatever_their_delimiter(
    tmp_path, delimiter, prompts, modes
):
    """A CSV a spreadsheet writes with , ; tab or | reads back cell for cell."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter)
    writer.writerow(["prompt", "mode"])
    writer.writerows(zip(prompts, modes, strict=False))
    path = tmp_path / "t.csv"
    path.write_bytes(out.getvalue().encode("utf-8"))
    rows = read_batch_file(path)
    assert [(r.request.body()["prompt"], r.request.body()["mode"]) for r in rows] == [
        (p, m) for p, m in zip(prompts, modes, strict=False)
    ]
