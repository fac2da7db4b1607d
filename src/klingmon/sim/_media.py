"""Result files: one tiny playable H.264 MP4, made unique per task by a trailing box.

A top-level ``free`` box may sit anywhere in an MP4 and players skip it, so
appending one that names the task keeps the file playable while every task's file
(and so its SHA-256) differs.
"""

from __future__ import annotations

import hashlib
import re
from functools import cache
from importlib import resources

__all__ = ["ByteRange", "file_bytes", "media_bytes", "media_sha256", "parse_range"]

_RANGE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$")


@cache
def _sample() -> bytes:
    return resources.files("klingmon.sim").joinpath("sample.mp4").read_bytes()


@cache
def media_bytes(task_id: str, index: int, size: int = 0, variant: str = "") -> bytes:
    """The MP4 served for result ``index`` of ``task_id``, padded to ``size`` bytes.

    The padding goes inside the same ``free`` box, so a big file stays playable.
    ``variant`` (a new-generation file name such as ``0-wm.mp4``) makes each file
    of a task differ; images and audio are served as the same MP4 bytes.
    """
    payload = f"klingmon-sim task={task_id} index={index}".encode()
    if variant:
        payload += f" file={variant}".encode()
    sample = _sample()
    pad = max(0, size - len(sample) - 8 - len(payload))
    payload += bytes(pad)
    box = (8 + len(payload)).to_bytes(4, "big") + b"free" + payload
    return sample + box


def media_sha256(task_id: str, index: int, size: int = 0) -> str:
    return hashlib.sha256(media_bytes(task_id, index, size)).hexdigest()


def file_bytes(task_id: str, name: str, size: int = 0) -> bytes:
    """The bytes of file ``name`` (``3.mp4`` as legacy serves it, or ``0-wm.png``)."""
    stem = name.removesuffix(".mp4")
    if stem.isdigit() and name.endswith(".mp4"):
        return media_bytes(task_id, int(stem), size)
    index = name.partition(".")[0].partition("-")[0]
    return media_bytes(task_id, int(index) if index.isdigit() else 0, size, name)


ByteRange = tuple[int, int]


def parse_range(header: str, size: int) -> ByteRange | None:
    """The inclusive ``(first, last)`` of a single ``bytes=`` range.

    Raises ValueError when the range cannot be satisfied (answer 416); returns None
    for a header we do not understand (answer the whole file, as RFC 9110 allows).
    """
    match = _RANGE.match(header)
    if match is None:
        return None
    first_s, last_s = match.groups()
    if not first_s and not last_s:
        return None
    if not first_s:
        length = int(last_s)
        if length == 0:
            raise ValueError("empty suffix range")
        return max(0, size - length), size - 1
    first = int(first_s)
    last = int(last_s) if last_s else size - 1
    if first >= size or last < first:
        raise ValueError("range not satisfiable")
    return first, min(last, size - 1)
