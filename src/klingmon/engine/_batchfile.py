"""Submit files: a prompt a line (.txt), or a task a row (.csv, .jsonl).

The whole file is read and validated before anything is stored, so a bad row costs
nothing: the error names the file and line, and no task of the file is submitted.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from klingmon.api._requests import TaskRequest, build_request
from klingmon.errors import InputFileError, RequestValidationError

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["FileRow", "read_batch_file", "requests_from_text"]

# Fields a row may carry besides the endpoint; anything else is most likely a typo.
_KNOWN_FIELDS = frozenset(
    {
        "prompt",
        "negative_prompt",
        "model_name",
        "mode",
        "duration",
        "aspect_ratio",
        "cfg_scale",
        "camera_control",
        "image",
        "image_tail",
        "static_mask",
        "dynamic_masks",
        "video_id",
        "sound",
        "watermark_info",
        "callback_url",
        "external_task_id",
    }
)
_JSON_FIELDS = frozenset({"camera_control", "dynamic_masks", "watermark_info"})
_MAX_LINE = 1_000_000


@dataclass(frozen=True, slots=True)
class FileRow:
    """One validated task from a submit file, with the line it came from."""

    line: int
    request: TaskRequest


def read_batch_file(
    path: Path, *, defaults: dict[str, Any] | None = None, endpoint: str = "text2video"
) -> list[FileRow]:
    """Every task of ``path``, validated; InputFileError at the first bad line."""
    name = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputFileError(name, 0, f"cannot read: {exc.strerror}") from None
    text = _decode(name, raw)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        rows = _csv_rows(name, text)
    elif suffix in {".jsonl", ".ndjson"}:
        rows = _jsonl_rows(name, text)
    elif suffix in {".txt", ""}:
        return requests_from_text(text, name=name, defaults=defaults, endpoint=endpoint)
    else:
        raise InputFileError(
            name, 0, f"unknown file type {suffix!r}; use .txt, .csv or .jsonl"
        )
    out: list[FileRow] = []
    for line, fields in rows:
        row_endpoint = str(fields.pop("endpoint", "") or endpoint)
        out.append(FileRow(line, _build(name, line, row_endpoint, defaults, fields)))
    if not out:
        raise InputFileError(name, 0, "no tasks in file")
    return out


def requests_from_text(
    text: str,
    *,
    name: str = "<stdin>",
    defaults: dict[str, Any] | None = None,
    endpoint: str = "text2video",
) -> list[FileRow]:
    """A prompt a line; blank lines and lines starting with ``#`` are skipped."""
    out: list[FileRow] = []
    for number, line in enumerate(_lines(text), start=1):
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        _check_line(name, number, line)
        out.append(
            FileRow(
                number, _build(name, number, endpoint, defaults, {"prompt": prompt})
            )
        )
    if not out:
        raise InputFileError(name, 0, "no prompts in file")
    return out


def _lines(text: str) -> list[str]:
    """Lines as editors count them: split on newlines only, not on U+2028 and kin."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _decode(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputFileError(name, line, "not valid UTF-8 text") from None


def _check_line(name: str, number: int, line: str) -> None:
    if len(line) > _MAX_LINE:
        raise InputFileError(name, number, "line longer than 1,000,000 characters")
    if "\x00" in line:
        raise InputFileError(name, number, "line contains a NUL character")


def _csv_rows(name: str, text: str) -> list[tuple[int, dict[str, Any]]]:
    for number, text_line in enumerate(_lines(text), start=1):
        _check_line(name, number, text_line)
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    if not reader.fieldnames:
        raise InputFileError(name, 1, "no header row")
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        for record in reader:
            line = reader.line_num
            if None in record:
                raise InputFileError(name, line, "more cells than header columns")
            fields: dict[str, Any] = {}
            for key, value in record.items():
                column = (key or "").strip()
                cell = (value or "").strip()
                if not column or not cell:
                    continue
                fields[column] = _cell(name, line, column, cell)
            if fields:
                rows.append((line, fields))
    except csv.Error as exc:
        raise InputFileError(name, reader.line_num, f"bad CSV: {exc}") from None
    return rows


def _cell(name: str, line: int, column: str, cell: str) -> Any:
    if column in _JSON_FIELDS:
        try:
            return json.loads(cell)
        except json.JSONDecodeError:
            raise InputFileError(name, line, f"{column}: not valid JSON") from None
    if column == "cfg_scale":
        try:
            return float(cell)
        except ValueError:
            raise InputFileError(name, line, "cfg_scale: not a number") from None
    return cell


def _jsonl_rows(name: str, text: str) -> list[tuple[int, dict[str, Any]]]:
    rows: list[tuple[int, dict[str, Any]]] = []
    for number, line in enumerate(_lines(text), start=1):
        if not line.strip():
            continue
        _check_line(name, number, line)
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(name, number, f"not valid JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise InputFileError(name, number, "each line must be a JSON object")
        rows.append((number, value))
    return rows


def _build(
    name: str,
    line: int,
    endpoint: str,
    defaults: dict[str, Any] | None,
    fields: dict[str, Any],
) -> TaskRequest:
    generic = endpoint.strip("/").removeprefix("v1/videos/") not in {
        "text2video",
        "image2video",
        "video-extend",
    }
    if not generic:
        unknown = sorted(set(fields) - _KNOWN_FIELDS)
        if unknown:
            raise InputFileError(name, line, f"unknown field {unknown[0]!r}")
    merged = {**_applicable(endpoint, defaults or {}), **fields}
    if "duration" in merged and not isinstance(merged["duration"], str):
        merged["duration"] = str(merged["duration"])
    try:
        return build_request(endpoint, merged)
    except RequestValidationError as exc:
        raise InputFileError(name, line, exc.message) from None


# Flag defaults apply only where the endpoint takes the field.
_NOT_FOR: dict[str, frozenset[str]] = {
    "video-extend": frozenset(
        {"model_name", "mode", "duration", "aspect_ratio", "camera_control", "sound"}
    ),
    "image2video": frozenset({"aspect_ratio"}),
}


def _applicable(endpoint: str, defaults: dict[str, Any]) -> dict[str, Any]:
    name = endpoint.strip("/").removeprefix("v1/videos/")
    skip = _NOT_FOR.get(name, frozenset())
    return {k: v for k, v in defaults.items() if v is not None and k not in skip}
