"""Result files: small playable MP4s, unique per task, with Range support."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest
from simhelp import T2V, create

from klingmon.sim import Simulator
from klingmon.sim._media import media_bytes, parse_range

HOUR = 3600.0


def _boxes(data: bytes) -> list[bytes]:
    """Top-level MP4 box types; fails if the sizes do not add up."""
    kinds, at = [], 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        assert size >= 8
        kinds.append(data[at + 4 : at + 8])
        at += size
    assert at == len(data)
    return kinds


async def _finished(connect, clock, count=1):
    sim, client = await connect()
    tasks = [await create(client) for _ in range(count)]
    clock.advance(10 * HOUR)
    urls = []
    for task in tasks:
        data = (await client.get(f"{T2V}/{task['task_id']}")).json()["data"]
        urls.append(data["task_result"]["videos"][0]["url"])
    return sim, client, urls


async def test_media_is_a_playable_mp4_unique_per_task(connect, clock):
    """Each task's file is a well-formed MP4 ending in a free box naming the task."""
    sim, client, urls = await _finished(connect, clock, count=2)
    bodies = []
    for url in urls:
        response = await client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"] == "video/mp4"
        assert int(response.headers["content-length"]) == len(response.content)
        kinds = _boxes(response.content)
        assert kinds[0] == b"ftyp"
        assert {b"moov", b"mdat"} <= set(kinds)
        assert kinds[-1] == b"free"
        bodies.append(response.content)
        digest = hashlib.sha256(response.content).hexdigest()
        assert sim.media_sha256(url) == digest
        assert sim.media_sha256(url.removeprefix("http://sim.test")) == digest
    assert bodies[0] != bodies[1]
    assert len(bodies[0]) < 10_000


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [("bytes=0-9", 0, 9), ("bytes=100-", 100, None), ("bytes=-16", -16, None)],
)
async def test_range_requests(connect, clock, header, first, last):
    """A Range request gets 206 with Content-Range and just those bytes."""
    _, client, urls = await _finished(connect, clock)
    whole = (await client.get(urls[0])).content
    response = await client.get(urls[0], headers={"Range": header})
    assert response.status_code == 206
    expected = whole[first : None if last is None else last + 1]
    assert response.content == expected
    start = first if first >= 0 else len(whole) + first
    assert response.headers["content-range"] == (
        f"bytes {start}-{start + len(expected) - 1}/{len(whole)}"
    )
    assert int(response.headers["content-length"]) == len(expected)


async def test_unsatisfiable_range_is_416(connect, clock):
    """A range past the end is 416 with Content-Range bytes */size."""
    _, client, urls = await _finished(connect, clock)
    response = await client.get(urls[0], headers={"Range": "bytes=999999-"})
    assert response.status_code == 416
    assert response.headers["content-range"].startswith("bytes */")


async def test_no_media_before_success(connect):
    """A file is not served until its task has succeeded."""
    _, client = await connect()
    task = await create(client)
    response = await client.get(f"/media/{task['task_id']}/0.mp4")
    assert response.status_code == 404
    assert (await client.get("/media/nope/0.mp4")).status_code == 404
    assert (await client.get(f"/media/{task['task_id']}/x.mp4")).status_code == 404


def test_media_sha256_needs_a_media_path():
    """media_sha256 refuses paths that are not result files."""
    with pytest.raises(ValueError, match="media"):
        Simulator().media_sha256("/v1/videos/text2video")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_served_file_decodes(tmp_path):
    """ffmpeg decodes a served file without error (it is really playable)."""
    path = tmp_path / "clip.mp4"
    path.write_bytes(media_bytes("1234", 0))
    result = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 0
    assert result.stderr == b""


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", (0, 0)),
        ("bytes=5-1000", (5, 99)),
        ("items=0-1", None),
        ("bytes=-", None),
    ],
)
def test_parse_range(header, expected):
    """parse_range clamps to the file and ignores what it does not understand."""
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-2", "bytes=-0"])
def test_parse_range_unsatisfiable(header):
    """Ranges past the end, inverted or empty cannot be satisfied."""
    with pytest.raises(ValueError):
        parse_range(header, 100)
