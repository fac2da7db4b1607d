"""Submit files: a prompt a line (.txt), or a task a row (.csv, .jsonl).

The whole file is read and every row validated before anything is stored, so a bad row
costs nothing. All the bad rows are reported at once (``file:line: field: message``,
one a line, see :class:`~klingmon.errors.BadRowsError`), so one run finds every
mistake, and no task of the file is submitted.

A ``.txt`` file has no comment syntax: every line that is not blank is a prompt, as
written (``#1 bestseller shot`` included). Blank lines hold no prompt and are skipped;
each task keeps the number of the line it came from.
"""

from __future__ import annotations

import codecs
import csv
import difflib
import functools
import io
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from klingmon.api import (
    ENDPOINTS,
    Generation,
    Image2VideoRequest,
    TaskRequest,
    Text2VideoRequest,
    VideoExtendRequest,
    build_request,
    generation_of,
    resolve_endpoint,
)
from klingmon.batchfile._columns import INT_COLUMNS, JSON_COLUMNS, KNOWN_COLUMNS
from klingmon.errors import BadRowsError, RequestValidationError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["REPORT_LIMIT", "FileRow", "read_batch_file", "requests_from_text"]

#: Bad lines shown in one error; the rest are counted ("and 12 more").
REPORT_LIMIT = 20

_MAX_LINE = 1_000_000
#: Delimiters a CSV header is sniffed for (a spreadsheet in a comma-decimal locale
#: writes ``;``); a header with none of them is one column, split on commas.
_CSV_DELIMITERS = ",;\t|"
_ENDPOINT_HINT = (
    "text2video, image2video, video-extend, a path like /v1/videos/x "
    "or /<family>/<model>"
)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")

_Model = type[Text2VideoRequest] | type[Image2VideoRequest] | type[VideoExtendRequest]
#: The typed requests, by path: validated here so that every bad field is reported.
_TYPED: dict[str, _Model] = {
    m.path: m for m in (Text2VideoRequest, Image2VideoRequest, VideoExtendRequest)
}


@dataclass(frozen=True, slots=True)
class FileRow:
    """One validated task from a submit file, with the line it came from."""

    line: int
    request: TaskRequest
    #: What the capability table doubts about the row (shown, never refused).
    warnings: tuple[str, ...] = ()

    def warning_lines(self, name: str) -> list[str]:
        """``file:line: warning``, one a doubt, as the CLI shows them."""
        return [f"{name}:{self.line}: {w}" for w in self.warnings]


@dataclass(frozen=True, slots=True)
class _Problem:
    line: int | None
    message: str
    #: The unknown field this problem is about, so a CSV can name a bad column once.
    unknown: str | None = None
    hint: str = ""


@dataclass
class _Report:
    """Every problem of one file, raised together."""

    name: str
    problems: list[_Problem] = field(default_factory=list)
    _seen: set[_Problem] = field(default_factory=set)

    def add(self, line: int | None, message: str, **about: str) -> None:
        problem = _Problem(line, message, **about)
        if problem not in self._seen:  # a bad default is reported once, not per row
            self._seen.add(problem)
            self.problems.append(problem)

    def fold_columns(self, header_line: int, used: dict[str, set[int]]) -> None:
        """A column unknown on every row that fills it is named once, at the header."""
        by_column: dict[str, list[_Problem]] = {}
        for problem in self.problems:
            if problem.unknown is not None and problem.unknown in used:
                by_column.setdefault(problem.unknown, []).append(problem)
        for column, found in by_column.items():
            if {p.line for p in found} != used[column]:
                continue
            folded = set(found)
            self.problems = [p for p in self.problems if p not in folded]
            message = f"{_shown(column)}: unknown column{found[0].hint}"
            self.problems.append(_Problem(header_line, message))

    def raise_if_any(self) -> None:
        if self.problems:
            ordered = sorted(self.problems, key=lambda p: p.line or 0)
            raise BadRowsError(
                self.name, [(p.line, p.message) for p in ordered], limit=REPORT_LIMIT
            )


def read_batch_file(
    path: Path, *, defaults: dict[str, Any] | None = None, endpoint: str = "text2video"
) -> list[FileRow]:
    """Every task of ``path``, validated; BadRowsError listing every bad line."""
    name = str(path)
    suffix = path.suffix.lower()
    parse = _PARSERS.get(suffix)
    if parse is None:
        raise BadRowsError(
            name, [(None, f"unknown file type {suffix!r}; use .txt, .csv or .jsonl")]
        )
    text = _read(name, path)
    return _tasks(_Report(name), text, parse, defaults, endpoint)


def requests_from_text(
    text: str,
    *,
    name: str = "<stdin>",
    defaults: dict[str, Any] | None = None,
    endpoint: str = "text2video",
) -> list[FileRow]:
    """A prompt a line: every line that is not blank is a prompt, as written."""
    return _tasks(_Report(name), text, _text_records, defaults, endpoint)


_Records = list[tuple[int, dict[str, Any]]]


def _tasks(
    report: _Report,
    text: str,
    parse: Callable[[_Report, str], _Records],
    defaults: dict[str, Any] | None,
    endpoint: str,
) -> list[FileRow]:
    records = parse(report, text)
    rows: list[FileRow] = []
    columns = parse is _csv_records
    for line, fields in records:
        request = _build(report, line, fields, endpoint, defaults or {}, columns)
        if request is not None:
            rows.append(FileRow(line, request, tuple(request.warnings())))
    if parse is _csv_records:
        used: dict[str, set[int]] = {}
        for line, fields in records:
            for column in fields:
                used.setdefault(column, set()).add(line)
        report.fold_columns(1, used)
    report.raise_if_any()
    if not rows:
        what = "prompts" if parse is _text_records else "tasks"
        raise BadRowsError(report.name, [(None, f"no {what} in file")])
    return rows


def _read(name: str, path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadRowsError(name, [(None, "No such file")]) from None
    except IsADirectoryError:
        raise BadRowsError(name, [(None, "is a folder, not a file")]) from None
    except OSError as exc:
        problem = f"cannot read: {exc.strerror or type(exc).__name__}"
        raise BadRowsError(name, [(None, problem)]) from None
    raw = raw.removeprefix(codecs.BOM_UTF8)  # spreadsheets write one
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        bad = [
            (number, "not valid UTF-8 text")
            for number, chunk in enumerate(raw.split(b"\n"), start=1)
            if not _is_utf8(chunk)
        ]
        raise BadRowsError(name, bad, limit=REPORT_LIMIT) from None


def _is_utf8(chunk: bytes) -> bool:
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _lines(text: str) -> list[str]:
    """Lines as editors count them: split on newlines only, not on U+2028 and kin."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _line_ok(report: _Report, number: int, line: str) -> bool:
    if len(line) > _MAX_LINE:
        report.add(number, "line longer than 1,000,000 characters")
        return False
    if "\x00" in line:
        report.add(number, "line contains a NUL character")
        return False
    return True


def _text_records(report: _Report, text: str) -> _Records:
    records: _Records = []
    for number, line in enumerate(_lines(text), start=1):
        prompt = line.strip()
        if prompt and _line_ok(report, number, line):
            records.append((number, {"prompt": prompt}))
    return records


def _jsonl_records(report: _Report, text: str) -> _Records:
    records: _Records = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip() or not _line_ok(report, number, line):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            report.add(number, f"not valid JSON ({exc.msg})")
            continue
        if isinstance(value, dict):
            records.append((number, value))
        else:
            report.add(number, "each line must be a JSON object")
    return records


def _delimiter(text: str) -> str:
    """The delimiter of the header line (the first), among ``,;<tab>|``."""
    header = text.partition("\n")[0][:10_000]  # enough to tell; bounds the regexes
    try:
        return csv.Sniffer().sniff(header, delimiters=_CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","


def _csv_records(report: _Report, text: str) -> _Records:
    lines_ok = [_line_ok(report, n, t) for n, t in enumerate(_lines(text), start=1)]
    if not all(lines_ok):
        return []  # the csv module cannot step over such a line
    delimiter = _delimiter(text)
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter=delimiter, strict=True
    )
    records: _Records = []
    try:
        if not reader.fieldnames:
            report.add(None, "no header row")
            return []
        for record in reader:
            line = reader.line_num
            if None in record:
                report.add(
                    line,
                    f"more cells than header columns (a cell holding {delimiter!r} "
                    "must be in double quotes)",
                )
                continue
            fields = _csv_fields(report, line, record)
            if fields:
                records.append((line, fields))
    except csv.Error as exc:
        report.add(reader.line_num, f"bad CSV: {exc}; the lines after it were not read")
    return records


def _csv_fields(report: _Report, line: int, record: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in record.items():
        column = (key or "").strip()
        cell = (value or "").strip()
        if not cell:
            continue
        if not column:
            report.add(line, "a cell under a column with no name in the header")
            continue
        if column in JSON_COLUMNS:
            try:
                fields[column] = json.loads(cell)
            except json.JSONDecodeError:
                report.add(line, f"{column}: not valid JSON")
        elif column in INT_COLUMNS:
            try:
                fields[column] = int(cell)
            except ValueError:
                report.add(line, f"{column}: not a whole number")
        elif column == "cfg_scale":
            try:
                fields[column] = float(cell)
            except ValueError:
                report.add(line, "cfg_scale: not a number")
        else:
            fields[column] = cell
    return fields


_PARSERS: dict[str, Callable[[_Report, str], _Records]] = {
    "": _text_records,
    ".txt": _text_records,
    ".csv": _csv_records,
    ".jsonl": _jsonl_records,
    ".ndjson": _jsonl_records,
}


def _build(  # noqa: PLR0917 - a private helper of _tasks, called once
    report: _Report,
    line: int,
    fields: dict[str, Any],
    endpoint: str,
    defaults: dict[str, Any],
    columns: bool,
) -> TaskRequest | None:
    """The row's request, or None once its problems are in ``report``.

    ``columns``: the row came from a CSV, whose column names are checked too.
    """
    fields = dict(fields)
    given = fields.pop("endpoint", None)
    if given is not None and not isinstance(given, str):
        report.add(line, f"endpoint: must be text ({_ENDPOINT_HINT})")
        return None
    path = resolve_endpoint(given or endpoint)
    merged = {**_applicable(path, defaults), **fields}
    duration = merged.get("duration")
    if isinstance(duration, (int, float)) and not isinstance(duration, bool):
        merged["duration"] = f"{duration:g}"
    model = _TYPED.get(path)
    bad_columns = columns and _unknown_columns(
        report, line, path, model, merged, fields
    )
    try:
        request = (
            build_request(path, merged)
            if model is None
            else model.model_validate(merged)
        )
    except RequestValidationError as exc:  # a pass-through path, or an image file
        if exc.message.startswith("task_path"):
            hint = _hint(_close(given or endpoint, tuple(ENDPOINTS)))
            report.add(line, f"endpoint: not a Kling endpoint ({_ENDPOINT_HINT}){hint}")
        else:
            report.add(line, exc.message)
    except ValidationError as exc:
        assert model is not None  # only the typed models raise it  # noqa: S101
        _explain(report, line, exc, model, fields, defaults)
    else:
        return None if bad_columns else request
    return None


def _unknown_columns(  # noqa: PLR0917 - a private helper of _build, called once
    report: _Report,
    line: int,
    path: str,
    model: _Model | None,
    merged: dict[str, Any],
    fields: dict[str, Any],
) -> bool:
    """Report the row's columns no generation knows; True if there were any.

    A name the typed model itself refuses as a likely mistake is left to it (one
    problem, not two); the row is still validated, so its other errors show too.
    """
    flagged = set(model.likely_mistakes(merged)) if model is not None else set()
    unknown = [n for n in fields if n not in KNOWN_COLUMNS and n not in flagged]
    if not unknown:
        return False
    kind = path.removeprefix("/v1/videos/")
    known = tuple(sorted(n for n in KNOWN_COLUMNS if n not in fields))
    for name in unknown:
        hint = _hint(_close(name, known))
        message = f"{_shown(name)}: unknown field for {kind}{hint}"
        report.add(line, message, unknown=name, hint=hint)
    return True


def _explain(  # noqa: PLR0917 - a private helper of _build, called once
    report: _Report,
    line: int,
    exc: ValidationError,
    model: _Model,
    fields: dict[str, Any],
    defaults: dict[str, Any],
) -> None:
    """One problem per bad field, with a suggestion for a misspelt one."""
    known = tuple(n for n in [*model.model_fields, "endpoint"] if n not in fields)
    kind = model.path.rsplit("/", 1)[-1]
    errors = exc.errors(include_url=False)
    explained: set[str] = set()
    for error in errors:
        loc = error["loc"]
        if error["type"] != "extra_forbidden" or len(loc) != 1:
            continue
        name = str(loc[0])
        close = _close(name, known)
        if close is not None:
            explained.add(close)
        hint = _hint(close)
        message = f"{_shown(name)}: unknown field for {kind}{hint}"
        report.add(line, message, unknown=name, hint=hint)
    for error in errors:
        loc = error["loc"]
        where = ".".join(_shown(str(p)) for p in loc) or "row"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            if len(loc) > 1:
                report.add(line, f"{where}: unknown field")
        elif error["type"] == "missing" and where in explained:
            continue  # the misspelt field above is the cause
        elif loc and loc[0] not in fields and loc[0] in defaults:
            report.add(None, f"{where} (the default for every row): {message}")
        else:
            report.add(line, f"{where}: {message}")


def _shown(name: str) -> str:
    """A field name as a message may carry it: plain, or quoted with escapes."""
    if _PLAIN_NAME.fullmatch(name):
        return name
    quoted = repr(name)
    return quoted if len(quoted) <= 66 else quoted[:62] + "…" + quoted[0]


@functools.lru_cache(maxsize=1024)  # a misspelt column repeats on every row
def _close(name: str, known: tuple[str, ...]) -> str | None:
    """The known name ``name`` is most likely a misspelling of, if any."""
    close = difflib.get_close_matches(name.lower(), known, n=1, cutoff=0.6)
    return close[0] if close else None


def _hint(close: str | None) -> str:
    return f" (did you mean {close!r}?)" if close is not None else ""


# Flag defaults apply only where the endpoint takes the field.
_NOT_FOR: dict[str, frozenset[str]] = {
    "video-extend": frozenset(
        {"model_name", "mode", "duration", "aspect_ratio", "camera_control", "sound"}
    ),
    "image2video": frozenset({"aspect_ratio"}),
}


#: The new generation names its model in the path and has no ``mode``/``cfg_scale``.
_NOT_FOR_V2026 = frozenset({"model_name", "mode", "cfg_scale"})


def _applicable(endpoint: str, defaults: dict[str, Any]) -> dict[str, Any]:
    name = endpoint.strip("/").removeprefix("v1/videos/")
    try:
        new = generation_of(endpoint) is Generation.V2026
    except RequestValidationError:  # a malformed path: _build reports it
        new = False
    skip = _NOT_FOR_V2026 if new else _NOT_FOR.get(name, frozenset())
    return {k: v for k, v in defaults.items() if v is not None and k not in skip}
