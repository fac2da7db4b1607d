"""Is an answer the result: content types, 206 ranges and magic bytes (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingmon.downloads._checks import (
    check_content_type,
    check_partial,
    content_range,
    looks_like_media,
)
from klingmon.downloads._rules import (
    DownloadError,
    DownloadRefusedError,
    show_url,
)

URL = "http://127.0.0.1:8787/media/1/0.mp4"


@pytest.mark.parametrize(
    "value",
    [
        "video/mp4",
        "VIDEO/MP4; codecs=avc1",
        "image/png",
        "audio/mpeg",
        "application/octet-stream",
        "binary/octet-stream",
    ],
)
def test_media_types_are_taken(value: str) -> None:
    """Video, image, audio and octet streams are taken without sniffing."""
    assert check_content_type(value, URL) is False


@pytest.mark.parametrize(
    "value", ["text/html; charset=utf-8", "application/json", "text/plain", "x/y"]
)
def test_other_types_are_refused_with_the_url(value: str) -> None:
    """Anything else is refused in one line naming the URL with its port."""
    with pytest.raises(DownloadRefusedError) as refused:
        check_content_type(value, URL)
    kind = value.partition(";")[0]
    assert refused.value.message == (
        f"refused {URL}: answered Content-Type {kind}, not a media file"
    )


def test_no_content_type_means_sniff() -> None:
    """A missing (or blank) content type asks for the bytes to be checked."""
    assert check_content_type(None, URL) is True
    assert check_content_type("  ", URL) is True


def test_206_must_answer_the_range_asked_for() -> None:
    """No Range sent, a wrong first byte or an unknown length are all refused."""
    assert check_partial("bytes 100-199/200", asked_from=100, shown=URL) == 200
    with pytest.raises(DownloadError, match="to a request without Range"):
        check_partial("bytes 0-9/*", asked_from=None, shown=URL)
    with pytest.raises(DownloadError, match=r"bytes 0-99/200 for bytes=100-"):
        check_partial("bytes 0-99/200", asked_from=100, shown=URL)
    with pytest.raises(DownloadError, match="starting over"):
        check_partial("bytes 100-109/*", asked_from=100, shown=URL)
    with pytest.raises(DownloadError, match="no Content-Range"):
        check_partial(None, asked_from=100, shown=URL)


def test_magic_bytes() -> None:
    """MP4, PNG, JPEG, WebP and WebM heads are media; HTML and JSON are not."""
    assert looks_like_media(b"\x00\x00\x00\x20ftypisom\x00\x00")
    assert looks_like_media(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d")
    assert looks_like_media(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    assert looks_like_media(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert looks_like_media(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81")
    assert not looks_like_media(b"<!DOCTYPE html><html>")
    assert not looks_like_media(b'{"code": 1203}')
    assert not looks_like_media(b"")


def test_show_url_keeps_the_port_and_drops_secrets() -> None:
    """Messages quote scheme, host, port and path; never userinfo or the query."""
    assert show_url("http://u:pw@127.0.0.1:8787/media/1/0.mp4?sig=s") == URL
    assert (
        show_url("https://cdn.klingai.com/a.mp4?x=1") == "https://cdn.klingai.com/a.mp4"
    )
    assert show_url("http://[::1]:9000/a.mp4") == "http://[::1]:9000/a.mp4"


@given(st.integers(0, 2**40), st.integers(0, 2**40), st.integers(1, 2**41))
def test_content_range_round_trip(first: int, length: int, total: int) -> None:
    """``bytes first-last/total`` gives back its first byte and total."""
    header = f"bytes {first}-{first + length}/{total}"
    assert content_range(header) == (first, total)
    assert content_range(f"bytes {first}-{first + length}/*") == (first, None)


@pytest.mark.parametrize(
    "head",
    [
        b"ID3\x04\x00\x00\x00\x00\x00\x00",  # MP3 with tags
        b"\xff\xfb\x90\x64\x00\x00\x00\x00",  # MPEG-1 layer III frame, no tags
        b"\xff\xf3\x64\xc4\x00\x00\x00\x00",  # MPEG-2 layer III
        b"\xff\xf1\x50\x80\x00\x00\x00\x00",  # ADTS AAC
        b"RIFF\x24\x08\x00\x00WAVEfmt ",
    ],
)
def test_audio_files_are_media(head: bytes):
    assert looks_like_media(head)


@pytest.mark.parametrize(
    "head",
    [
        b"\xff\xe8\x00\x00",  # sync bits with the reserved MPEG version
        b"\xff\x00\x00\x00",
        b"RIFF\x24\x08\x00\x00JUNKdata",
        b"<!DOCTYPE html>",
    ],
)
def test_near_audio_bytes_are_not_media(head: bytes):
    assert not looks_like_media(head)


@pytest.mark.parametrize("kind", ["audio/mpeg", "audio/wav", "audio/x-wav"])
def test_audio_content_types_are_taken(kind: str):
    assert check_content_type(kind, "u") is False
