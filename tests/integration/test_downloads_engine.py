"""Downloads against the simulator on loopback: whole batches, resumes, and refusals."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from engine_support import loopback_monitor

from klingmon.api import Text2VideoRequest
from klingmon.downloads import Downloader, DownloadSettings
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

if TYPE_CHECKING:
    from collections.abc import Iterator

    from klingmon.engine import Monitor


@pytest.fixture
def media_server() -> Iterator[SimServer]:
    """A fast simulator whose result files are 300 KiB, so they come in chunks."""
    config = SimConfig(
        admin=True,
        seed=99,
        time_scale=1000.0,
        faults=Faults(fail_rate=0.0),
        media_size=300 * 1024,
    )
    with SimServer(config) as server:
        yield server


def _settings(server: SimServer, out: Path, **changes: object) -> DownloadSettings:
    base = DownloadSettings(
        out=str(out),
        allow_origins=(server.url,),
        backoff_base=0.01,
        backoff_cap=0.05,
        chunk_size=32 * 1024,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def _monitor(server: SimServer, tmp_path: Path, out: Path) -> Monitor:
    monitor = loopback_monitor(server.url, server.sim, tmp_path / "k.db")
    monitor.settings = dataclasses.replace(
        monitor.settings, downloads=_settings(server, out)
    )
    return monitor


def _part_with_bytes(out: Path) -> bool:
    for part in out.rglob("*.part"):
        with contextlib.suppress(FileNotFoundError):  # renamed meanwhile
            if part.stat().st_size:
                return True
    return False


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_batch_downloads_completely(
    media_server: SimServer, tmp_path: Path
) -> None:
    """Every succeeded task's video lands, hashed as the simulator serves it."""
    out = tmp_path / "out"
    monitor = _monitor(media_server, tmp_path, out)
    prompts = ["A red fox in snow", "../../etc/passwd", "x" * 2000, "Ünïcödé  ✨ city"]
    batch = monitor.submit([Text2VideoRequest(prompt=p) for p in prompts], batch="b1")
    await monitor.run(batch=batch.id)
    rows = monitor.store.downloads.download_rows(batch.id)
    assert len(rows) == len(prompts)
    assert {r.status for r in rows} == {"done"}
    for row in rows:
        assert row.dest is not None
        path = out / row.dest[len(str(out)) + 1 :]
        assert path.is_file()
        assert path.resolve().is_relative_to(out.resolve())
        assert len(path.name) < 200
        assert _sha(path) == row.sha256 == media_server.sim.media_sha256(row.url)
        assert row.size == path.stat().st_size == 300 * 1024
        sidecar = json.loads(path.with_name(path.name + ".json").read_text())
        assert sidecar["sha256"] == row.sha256
        assert sidecar["source_url"] == row.url
        assert "prompt" in sidecar["request"]
        assert not list(path.parent.glob("*.part"))
    assert monitor.store.downloads.download_counts(batch.id)["done"] == len(prompts)
    await monitor.aclose()


async def test_dropped_connection_resumes_with_range(tmp_path: Path) -> None:
    """A media answer cut halfway is resumed with Range and ends with the right hash."""
    config = SimConfig(
        admin=True,
        seed=5,
        time_scale=1000.0,
        faults=Faults(fail_rate=0.0),
        media_size=400 * 1024,
        media_cut=2,
    )
    with SimServer(config) as server:
        monitor = loopback_monitor(server.url, server.sim, tmp_path / "k.db")
        batch = monitor.submit([Text2VideoRequest(prompt="a cut")], batch="cut")
        await monitor.run(batch=batch.id)
        out = tmp_path / "out"
        downloader = Downloader(monitor.store, _settings(server, out))
        counts = await downloader.run(batch_id=batch.id)
        await downloader.aclose()
        (row,) = monitor.store.downloads.download_rows(batch.id)
        assert counts["done"] == 1
        assert row.attempts == 2  # two answers were cut, the third completed
        assert row.sha256 == server.sim.media_sha256(row.url)
        assert row.dest is not None
        assert _sha(out / row.dest[len(str(out)) + 1 :]) == row.sha256
        media = server.sim.counters()["requests"]
        assert media.get("media 206", 0) >= 1  # the retries asked for the rest only
        await monitor.aclose()


async def test_file_in_place_after_crash_is_not_fetched_again(
    media_server: SimServer, tmp_path: Path
) -> None:
    """A file renamed into place before a crash is re-hashed and marked done."""
    out = tmp_path / "out"
    monitor = _monitor(media_server, tmp_path, out)
    batch = monitor.submit([Text2VideoRequest(prompt="once")], batch="once")
    await monitor.run(batch=batch.id)
    (row,) = monitor.store.downloads.download_rows(batch.id)
    served = media_server.sim.counters()["requests"].get("media 200", 0)
    # As if the process died between os.replace and the store's write:
    monitor.store.downloads.requeue_downloads([row.id])
    downloader = Downloader(monitor.store, _settings(media_server, out))
    counts = await downloader.run(batch_id=batch.id)
    await downloader.aclose()
    (again,) = monitor.store.downloads.download_rows(batch.id)
    assert counts["done"] == 1
    assert again.sha256 == row.sha256
    assert again.dest == row.dest
    assert media_server.sim.counters()["requests"].get("media 200", 0) == served
    await monitor.aclose()


async def test_server_ignoring_range_restarts_from_zero(
    media_server: SimServer, tmp_path: Path
) -> None:
    """A 200 answer to a Range request rewrites the part file from the start."""
    out = tmp_path / "out"
    monitor = loopback_monitor(media_server.url, media_server.sim, tmp_path / "k.db")
    batch = monitor.submit([Text2VideoRequest(prompt="no ranges")], batch="nr")
    await monitor.run(batch=batch.id)
    await monitor.client.aclose()
    (row,) = monitor.store.downloads.download_rows(batch.id)
    body = httpx.get(row.url).content
    seen: list[str | None] = []

    def no_ranges(request: httpx.Request) -> httpx.Response:
        # The simulator always honours Range; a CDN that ignores it is only here
        # (and it names no content type: the bytes are checked to be an MP4).
        seen.append(request.headers.get("range"))
        return httpx.Response(200, content=body)

    settings = _settings(media_server, out)
    # An earlier run (other settings) left a part file under another name: this
    # run moves it to its own place and resumes it.
    earlier = Path(
        monitor.store.downloads.set_download_dest(row.id, str(tmp_path / "old.mp4"))
    )
    earlier.with_name("old.mp4.part").write_bytes(b"stale bytes of another try")
    client = httpx.AsyncClient(transport=httpx.MockTransport(no_ranges))
    downloader = Downloader(monitor.store, settings, client=client)
    await downloader.run(batch_id=batch.id)
    await client.aclose()
    (done,) = monitor.store.downloads.download_rows(batch.id)
    assert seen == ["bytes=26-"]
    assert done.status == "done"
    assert done.dest is not None
    dest = Path(done.dest)
    assert dest.is_relative_to(out)
    assert _sha(dest) == done.sha256 == hashlib.sha256(body).hexdigest()
    assert not list(tmp_path.glob("old.mp4*"))
    monitor.store.close()


async def test_fsspec_destination(media_server: SimServer, tmp_path: Path) -> None:
    """An fsspec URL as destination receives the file and its sidecar."""
    fsspec = pytest.importorskip("fsspec", reason="the storage extra is not installed")
    monitor = loopback_monitor(media_server.url, media_server.sim, tmp_path / "k.db")
    batch = monitor.submit([Text2VideoRequest(prompt="to memory")], batch="mem")
    await monitor.run(batch=batch.id)
    await monitor.client.aclose()
    settings = dataclasses.replace(
        _settings(media_server, tmp_path),
        out="memory://klingmon-test/results",
        staging=str(tmp_path / "staging"),
    )
    downloader = Downloader(monitor.store, settings)
    counts = await downloader.run(batch_id=batch.id)
    await downloader.aclose()
    (row,) = monitor.store.downloads.download_rows(batch.id)
    assert counts["done"] == 1
    assert row.dest is not None
    assert row.dest.startswith("memory://klingmon-test/results/mem/")
    with fsspec.open(row.dest, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == row.sha256
    with fsspec.open(row.dest + ".json", "r") as f:
        assert json.load(f)["sha256"] == row.sha256
    assert not list((tmp_path / "staging").rglob("*.mp4"))
    monitor.store.close()


async def test_engine_stop_mid_file_then_resume(tmp_path: Path) -> None:
    """Stopping the engine mid-file keeps the part; the next run finishes it."""
    config = SimConfig(
        admin=True,
        seed=8,
        time_scale=1000.0,
        faults=Faults(fail_rate=0.0),
        media_size=1024 * 1024,
        media_chunk_delay=0.06,  # 16 chunks: about a second for the file
    )
    out = tmp_path / "out"
    with SimServer(config) as server:
        monitor = _monitor(server, tmp_path, out)
        batch = monitor.submit([Text2VideoRequest(prompt="stop me")], batch="stop")
        runner = asyncio.create_task(monitor.run(batch=batch.id))
        deadline = asyncio.get_running_loop().time() + 20
        while not _part_with_bytes(out):
            assert asyncio.get_running_loop().time() < deadline
            assert not runner.done()
            await asyncio.sleep(0.01)
        monitor.stop()
        await runner
        (row,) = monitor.store.downloads.download_rows(batch.id)
        assert row.status == "downloading"
        assert row.lease_owner is None  # released on the way out
        await monitor.aclose()
        restarted = _monitor(server, tmp_path, out)  # a new process, same store
        await restarted.run(batch=batch.id)
        (row,) = restarted.store.downloads.download_rows(batch.id)
        assert row.status == "done"
        assert row.sha256 == server.sim.media_sha256(row.url)
        assert server.sim.counters()["requests"].get("media 206", 0) == 1
        await restarted.aclose()


async def test_part_left_in_another_folder_moves_and_resumes(tmp_path: Path) -> None:
    """A run with another folder takes over a part file: moved, resumed, not pinned."""
    config = SimConfig(
        admin=True,
        seed=9,
        time_scale=1000.0,
        faults=Faults(fail_rate=0.0),
        media_size=1024 * 1024,
        media_chunk_delay=0.06,  # 16 chunks: about a second for the file
    )
    first, second = tmp_path / "first", tmp_path / "second"
    with SimServer(config) as server:
        monitor = _monitor(server, tmp_path, first)
        batch = monitor.submit([Text2VideoRequest(prompt="move me")], batch="mv")
        runner = asyncio.create_task(monitor.run(batch=batch.id))
        deadline = asyncio.get_running_loop().time() + 20
        while not _part_with_bytes(first):
            assert asyncio.get_running_loop().time() < deadline
            assert not runner.done()
            await asyncio.sleep(0.01)
        monitor.stop()
        await runner
        await monitor.aclose()
        store = Store.open(str(tmp_path / "k.db"))  # a new process, same store
        downloader = Downloader(store, _settings(server, second))
        counts = await downloader.run(batch_id=batch.id)
        await downloader.aclose()
        (row,) = store.downloads.download_rows(batch.id)
        resumed = server.sim.counters()["requests"].get("media 206", 0)
        store.close()
    assert counts["done"] == 1
    assert row.dest is not None
    assert Path(row.dest).is_relative_to(second)
    assert _sha(Path(row.dest)) == row.sha256 == server.sim.media_sha256(row.url)
    assert resumed == 1  # the moved part was resumed, not fetched again
    assert not [p for p in first.rglob("*") if p.is_file()]
