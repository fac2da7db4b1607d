"""Is this answer the result? Content type, range and magic-byte checks, and the budget.

A CDN or proxy may answer 200 with an HTML error page, or 206 to a request that asked
for no range; neither is the file. These checks are pure (the budget aside), so the
download manager stays a thin I/O shell around them.

* Content type: ``video/*``, ``image/*``, ``audio/*``, ``application/octet-stream``
  and ``binary/octet-stream`` are taken; anything else (``text/html``,
  ``application/json``, ``text/*`` ...) is refused. An answer without a content type
  is taken only when the file's first bytes are those of a known media format
  (MP4/MOV boxes, PNG, JPEG, GIF, WebP, WebM; audio: ID3, ``RIFF....WAVE``, an MPEG
  frame sync, Ogg, FLAC).
* Range: 206 only answers a request that sent ``Range``, and its ``Content-Range``
  must start exactly at the byte asked for and name the whole length.
* Budget: the bytes all parallel transfers may still bring, shared by them.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from klingmon.downloads._rules import DownloadError, DownloadRefusedError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "ByteBudget",
    "check_content_type",
    "check_partial",
    "content_range",
    "looks_like_media",
]

_TAKEN_PREFIXES = ("video/", "image/", "audio/")
_TAKEN = frozenset({"application/octet-stream", "binary/octet-stream"})
#: ISO base media boxes that may open a file (MP4, MOV, 3GP, HEIF, AVIF).
_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"})
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",  # JPEG
    b"GIF87a",
    b"GIF89a",
    b"\x1a\x45\xdf\xa3",  # WebM / Matroska
    b"ID3",  # MP3 with tags
    b"OggS",
    b"fLaC",
)


def content_range(value: str | None) -> tuple[int, int | None] | None:
    """``(first, total)`` of ``bytes first-last/total``; None when malformed."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    first, _, _ = span.partition("-")
    if not first.strip().isdigit():
        return None
    return int(first), int(total) if total.strip().isdigit() else None


def check_content_type(value: str | None, shown: str) -> bool:
    """Refuse an answer that says it is not a media file; True: sniff the bytes.

    ``shown`` is the URL as it may appear in a message (:func:`show_url`).
    """
    if value is None or not value.strip():
        return True
    kind = value.partition(";")[0].strip().lower()
    if kind.startswith(_TAKEN_PREFIXES) or kind in _TAKEN:
        return False
    raise DownloadRefusedError(
        f"refused {shown}: answered Content-Type {kind[:80]}, not a media file"
    )


def check_partial(header: str | None, *, asked_from: int | None, shown: str) -> int:
    """The total length a 206 announces, when it answers the request that was sent.

    ``asked_from``: the first byte the request's ``Range`` asked for (None: no Range).
    Raises :class:`DownloadError` (retried, from byte 0) for any other 206.
    """
    if asked_from is None:
        raise DownloadError(
            f"{shown} answered 206 Partial Content to a request without Range"
        )
    info = content_range(header)
    if info is None or info[0] != asked_from or info[1] is None:
        found = (header or "no Content-Range")[:80]
        raise DownloadError(
            f"{shown} answered {found} for bytes={asked_from}-; starting over"
        )
    return info[1]


def looks_like_media(head: bytes) -> bool:
    """Whether a file's first bytes are those of a known media format."""
    if head[4:8] in _BOXES:
        return True
    if head[:4] == b"RIFF" and head[8:12] in {b"WEBP", b"WAVE", b"AVI "}:
        return True
    if _mpeg_frame(head):
        return True
    return head.startswith(_SIGNATURES)


def _mpeg_frame(head: bytes) -> bool:
    """An MPEG audio frame header (an MP3 without ID3 tags, or ADTS AAC).

    Eleven set sync bits, then a version other than the reserved ``01``; a JPEG's
    ``FF D8`` has only the first eight of them.
    """
    if len(head) < 2 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    return (head[1] >> 3) & 0b11 != 0b01


class ByteBudget:
    """Bytes in flight across parallel transfers: each reserves its share first.

    A share is taken whole or not at all (never grown while waiting), so transfers
    cannot deadlock each other; a share above the capacity is clamped to it and waits
    until nothing else is in flight.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def hold(self, nbytes: int) -> AsyncIterator[int]:
        """Reserve ``nbytes`` (clamped to the capacity) for the ``async with`` body."""
        share = max(0, min(nbytes, self.capacity))
        async with self._changed:
            await self._changed.wait_for(lambda: self.used + share <= self.capacity)
            self.used += share
        try:
            yield share
        finally:
            async with self._changed:
                self.used -= share
                self._changed.notify_all()
