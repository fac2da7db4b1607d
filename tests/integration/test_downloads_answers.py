"""Answers that are not the result, over loopback: error pages, stray 206s, the budget.

The simulator's ``media`` fault scripts (``POST /admin/script``) serve an HTML page
with 200, a file without a content type, or a 206 that no request asked for.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from engine_support import loopback_monitor

from klingmon.api import Text2VideoRequest
from klingmon.downloads import Downloader, DownloadEvent, DownloadSettings
from klingmon.errors import ConfigError
from klingmon.sim import Faults, SimConfig
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from klingmon.store import DownloadRow, Store

SIZE = 300 * 1024
HTML = "<html><body>Service temporarily unavailable</body></html>"


@pytest.fixture
def server() -> Iterator[SimServer]:
    config = SimConfig(
        admin=True,
        seed=11,
        time_scale=1000.0,
        faults=Faults(fail_rate=0.0),
        media_size=SIZE,
    )
    with SimServer(config) as running:
        yield running


async def _done_tasks(server: SimServer, tmp_path: Path, n: int = 1) -> Store:
    monitor = loopback_monitor(server.url, server.sim, tmp_path / "k.db")
    prompts = [f"clip {i}" for i in range(n)]
    batch = monitor.submit([Text2VideoRequest(prompt=p) for p in prompts], batch="a")
    await monitor.run(batch=batch.id)
    await monitor.client.aclose()
    return monitor.store


def _settings(server: SimServer, out: Path, **changes: Any) -> DownloadSettings:
    base = DownloadSettings(
        out=str(out),
        allow_origins=(server.url,),
        attempts=3,
        backoff_base=0.01,
        backoff_cap=0.02,
    )
    return dataclasses.replace(base, **changes)


async def _fetch(
    store: Store,
    settings: DownloadSettings,
    on_event: Any = None,
) -> list[DownloadRow]:
    downloader = Downloader(store, settings, on_event=on_event)
    try:
        await downloader.run()
    finally:
        await downloader.aclose()
    return store.downloads.download_rows()


def _script(server: SimServer, **fault: Any) -> None:
    answer = httpx.post(f"{server.url}/admin/script", json={"route": "media", **fault})
    assert answer.status_code == 200, answer.text


def _shown(server: SimServer, row: DownloadRow) -> str:
    """The row's URL as messages quote it: with the port, without the query."""
    path = httpx.URL(row.url).path
    assert server.url.count(":") == 2  # http://127.0.0.1:<port>
    return f"{server.url}{path}"


def _files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.is_file()] if out.exists() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_html_error_page_with_200_is_refused(
    server: SimServer, tmp_path: Path
) -> None:
    """A 200 text/html page is not kept as .mp4 nor marked done; later the file is."""
    store = await _done_tasks(server, tmp_path)
    _script(server, status=200, body=HTML, content_type="text/html; charset=utf-8")
    out = tmp_path / "out"
    (row,) = await _fetch(store, _settings(server, out))
    assert row.status == "refused"
    assert row.last_error == (
        f"refused {_shown(server, row)}: answered Content-Type text/html, "
        "not a media file"
    )
    assert _files(out) == []  # neither the page nor a part file is kept
    (again,) = await _fetch(store, _settings(server, out))  # the CDN is back
    assert again.status == "done"
    assert again.dest is not None
    assert _sha(Path(again.dest)) == again.sha256 == server.sim.media_sha256(row.url)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", '{"error": "expired"}'), ("text/plain", "denied")],
)
async def test_json_and_text_answers_are_refused(
    server: SimServer, tmp_path: Path, content_type: str, body: str
) -> None:
    """application/json and text/* answers are refused, naming the URL and port."""
    store = await _done_tasks(server, tmp_path)
    _script(server, status=200, body=body, content_type=content_type)
    (row,) = await _fetch(store, _settings(server, tmp_path / "out"))
    assert row.status == "refused"
    assert row.last_error == (
        f"refused {_shown(server, row)}: answered Content-Type {content_type}, "
        "not a media file"
    )
    assert _files(tmp_path / "out") == []


async def test_no_content_type_is_judged_by_its_bytes(
    server: SimServer, tmp_path: Path
) -> None:
    """Without a content type an MP4 is taken; an HTML page is refused."""
    store = await _done_tasks(server, tmp_path, n=2)
    first, second = store.downloads.download_rows()
    _script(server, status=200, content_type="")  # the real file, no type
    out = tmp_path / "out"
    settings = _settings(server, out, parallel=1)
    rows = {r.id: r for r in await _fetch(store, settings)}
    assert rows[first.id].status == "done"
    assert rows[first.id].sha256 == server.sim.media_sha256(first.url)
    assert rows[second.id].status == "done"
    store.downloads.requeue_downloads([second.id])
    Path(rows[second.id].dest or "").unlink()
    _script(server, status=200, body=HTML, content_type="")
    rows = {r.id: r for r in await _fetch(store, settings)}
    assert rows[second.id].status == "refused"
    assert rows[second.id].last_error == (
        f"refused {_shown(server, second)}: no Content-Type, and the bytes are not "
        "a known video, image or audio format"
    )
    assert not Path(rows[second.id].dest or "").exists()
    assert not list(out.rglob("*.part"))


async def test_206_to_a_request_without_range_is_not_complete(
    server: SimServer, tmp_path: Path
) -> None:
    """``206 bytes 0-9/*`` to a plain GET is retried from 0, then fails clearly."""
    store = await _done_tasks(server, tmp_path, n=2)
    out = tmp_path / "out"
    settings = _settings(server, out, parallel=1)
    _script(server, status=206, content_range="bytes 0-9/*")  # once: then the file
    rows = await _fetch(store, settings)
    assert {r.status for r in rows} == {"done"}
    assert sorted(r.attempts for r in rows) == [0, 1]  # the stray 206 cost one
    for row in rows:
        assert row.size == SIZE
        assert _sha(Path(row.dest or "")) == server.sim.media_sha256(row.url)
    # A server that always does it: the file is never marked done.
    again = rows[0]
    store.downloads.requeue_downloads([again.id])
    Path(again.dest or "").unlink()
    _script(server, status=206, content_range="bytes 0-9/*", times=3)
    (failed,) = [r for r in await _fetch(store, settings) if r.id == again.id]
    assert failed.status == "failed"
    assert failed.last_error == (
        f"{_shown(server, again)} answered 206 Partial Content to a request "
        "without Range"
    )
    assert not Path(failed.dest or "").exists()
    assert not list(out.rglob("*.part"))


async def test_resume_answered_at_the_wrong_byte_starts_over(tmp_path: Path) -> None:
    """A 206 that does not start at the byte asked for restarts from 0; hash matches."""
    config = SimConfig(
        admin=True,
        seed=12,
        time_scale=1000.0,
        faults=Faults(fail_rate=0.0),
        media_size=SIZE,
        media_cut=1,  # the first answer stops halfway: the part file is resumed
    )
    with SimServer(config) as server:
        store = await _done_tasks(server, tmp_path)
        _script(server, status=206, content_range=f"bytes 0-99/{SIZE}")
        (row,) = await _fetch(store, _settings(server, tmp_path / "out"))
        counters = server.sim.counters()["requests"]
    assert row.status == "done"
    assert row.attempts == 2  # cut, then the wrong byte; the third was whole
    assert counters.get("media 206-scripted") == 1
    assert counters.get("media 200", 0) == 2  # both full reads started at byte 0
    assert _sha(Path(row.dest or "")) == row.sha256
    assert row.sha256 == server.sim.media_sha256(row.url)


async def test_parallel_files_share_one_byte_budget(tmp_path: Path) -> None:
    """Four parallel files never hold more than ``max_in_flight`` bytes at once."""
    config = SimConfig(
        admin=True,
        seed=13,
        time_scale=1000.0,
        faults=Faults(fail_rate=0.0),
        media_size=SIZE,
        media_chunk_delay=0.01,  # 5 chunks: each file streams for a while
    )
    active: dict[int, int] = {}
    peak = [0]

    def track(event: DownloadEvent) -> None:
        if event.kind == "progress" and event.total is not None:
            if event.received < event.total:
                active[event.download_id] = event.total
            else:
                active.pop(event.download_id, None)
            peak[0] = max(peak[0], sum(active.values()))

    with SimServer(config) as server:
        store = await _done_tasks(server, tmp_path, n=4)
        budget = 2 * SIZE + SIZE // 2  # room for two files, not three
        settings = _settings(
            server,
            tmp_path / "out",
            parallel=4,
            max_bytes=SIZE,
            max_in_flight=budget,
            chunk_size=16 * 1024,
        )
        rows = await _fetch(store, settings, on_event=track)
        expected = {r.id: server.sim.media_sha256(r.url) for r in rows}
    assert {r.status for r in rows} == {"done"}
    for row in rows:
        assert _sha(Path(row.dest or "")) == row.sha256 == expected[row.id]
    assert SIZE <= peak[0] <= budget


def test_budget_must_hold_one_whole_file() -> None:
    """A budget smaller than the largest file taken is a configuration error."""
    with pytest.raises(ConfigError, match="max_in_flight"):
        DownloadSettings(max_bytes=10, max_in_flight=5)
    assert DownloadSettings().budget == DownloadSettings().max_bytes == 2 * 1024**3
