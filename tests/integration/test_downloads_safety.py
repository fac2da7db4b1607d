"""Download safety against real HTTP: allowlist, redirects, size cap, expiry order."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import pytest
from engine_support import loopback_monitor
from starlette.applications import Starlette
from starlette.responses import RedirectResponse
from starlette.routing import Route

from klingmon.api import Text2VideoRequest
from klingmon.downloads import (
    Downloader,
    DownloadRefusedError,
    DownloadSettings,
    check_url,
)
from klingmon.sim import Faults, SimConfig
from klingmon.testing import AppServer, SimServer

if TYPE_CHECKING:
    from pathlib import Path

    from starlette.requests import Request

    from klingmon.store import DownloadRow, Store


def _config(**changes: object) -> SimConfig:
    return SimConfig(
        admin=True, seed=3, time_scale=1000.0, faults=Faults(fail_rate=0.0), **changes
    )  # type: ignore[arg-type]


async def _one_done_task(server: SimServer, tmp_path: Path, n: int = 1) -> Store:
    monitor = loopback_monitor(server.url, server.sim, tmp_path / "k.db")
    prompts = [f"clip {i}" for i in range(n)]
    batch = monitor.submit([Text2VideoRequest(prompt=p) for p in prompts], batch="s")
    await monitor.run(batch=batch.id)
    await monitor.client.aclose()
    return monitor.store


async def _fetch_all(store: Store, settings: DownloadSettings) -> list[DownloadRow]:
    downloader = Downloader(store, settings)
    try:
        await downloader.run()
    finally:
        await downloader.aclose()
    return store.downloads.download_rows()


def test_check_url_rules() -> None:
    """https on the allowlist passes; http, other hosts and userinfo are refused."""
    s = DownloadSettings(allow_origins=("http://127.0.0.1:9000",))
    check_url("https://cdn.klingai.com/a/b.mp4?sig=x", s)
    check_url("https://v15-kling-fdl.klingai.com/x.mp4", s)
    check_url("http://127.0.0.1:9000/media/1/0.mp4", s)
    for bad in (
        "http://cdn.klingai.com/a.mp4",
        "https://klingai.com.evil.org/a.mp4",
        "https://evil.org/cdn.klingai.com/a.mp4",
        "https://user:pw@cdn.klingai.com/a.mp4",
        "http://127.0.0.1:9001/media/1/0.mp4",
        "file:///etc/passwd",
        "https://cdn.klingai.com:notaport/a.mp4",
        "http://u:p@127.0.0.1:9000/media/1/0.mp4",
    ):
        with pytest.raises(DownloadRefusedError, match="refused"):
            check_url(bad, s)
    # Refusals quote the URL with its port, never its userinfo or query.
    with pytest.raises(DownloadRefusedError) as refused:
        check_url("http://u:p@127.0.0.1:9001/media/1/0.mp4?sig=secret", s)
    assert refused.value.message == (
        "refused http://127.0.0.1:9001/media/1/0.mp4: credentials in the URL"
    )


async def test_url_off_allowlist_is_refused(tmp_path: Path) -> None:
    """A result URL on a host off the allowlist is never fetched: status refused."""
    with SimServer(_config(public_url="https://files.example.org")) as server:
        store = await _one_done_task(server, tmp_path)
        before = server.sim.counters()["requests"].get("media 200", 0)
        (row,) = await _fetch_all(
            store, DownloadSettings(out=str(tmp_path / "out"), attempts=2)
        )
        assert row.status == "refused"
        assert "not on the download allowlist" in (row.last_error or "")
        assert server.sim.counters()["requests"].get("media 200", 0) == before
        assert not (tmp_path / "out").exists() or not any(
            p.is_file() for p in (tmp_path / "out").rglob("*")
        )


async def test_oversized_file_is_refused(tmp_path: Path) -> None:
    """A file above max_bytes is refused with a clear error and nothing kept."""
    with SimServer(_config(media_size=200_000)) as server:
        store = await _one_done_task(server, tmp_path)
        settings = DownloadSettings(
            out=str(tmp_path / "out"),
            allow_origins=(server.url,),
            max_bytes=100_000,
        )
        (row,) = await _fetch_all(store, settings)
        assert row.status == "refused"
        assert "200000 bytes is over the 100000-byte cap" in (row.last_error or "")
        assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
        # A later run with a larger cap takes the refused file again.
        bigger = dataclasses.replace(settings, max_bytes=300_000)
        (again,) = await _fetch_all(store, bigger)
        assert again.status == "done"
        assert again.sha256 == server.sim.media_sha256(again.url)


async def test_redirects_are_checked_at_every_hop(tmp_path: Path) -> None:
    """A redirect onto the allowlist is followed; one off it is refused."""
    with SimServer(_config()) as server:
        store = await _one_done_task(server, tmp_path, n=2)
        first, second = store.downloads.download_rows()
        target = first.url

        async def hop(request: Request) -> RedirectResponse:
            where = request.path_params["where"]
            url = target if where == "ok" else "https://evil.example.org/x.mp4"
            return RedirectResponse(url, status_code=302)

        app = Starlette(routes=[Route("/r/{where}", hop)])
        with AppServer(app) as redirector:
            # Point the owed rows at the redirector (as if Kling's CDN redirected).
            with store._write() as conn:
                from klingmon.store._schema import downloads  # noqa: PLC0415

                for row, where in ((first, "ok"), (second, "evil")):
                    conn.execute(
                        downloads.update()
                        .where(downloads.c.id == row.id)
                        .values(url=f"{redirector.url}/r/{where}")
                    )
            settings = DownloadSettings(
                out=str(tmp_path / "out"),
                allow_origins=(server.url, redirector.url),
            )
            ok, evil = await _fetch_all(store, settings)
        assert ok.status == "done"
        assert ok.sha256 == server.sim.media_sha256(target)
        assert evil.status == "refused"
        assert "evil.example.org" in (evil.last_error or "")


async def test_expiring_first_and_only(tmp_path: Path) -> None:
    """``expiring_within_s`` fetches only files deleted soon, soonest first."""
    with SimServer(_config()) as server:
        store = await _one_done_task(server, tmp_path, n=3)
        rows = store.downloads.download_rows()
        now_ms = int(server.sim.clock.now() * 1000)
        from klingmon.store._schema import downloads  # noqa: PLC0415

        with store._write() as conn:
            for row, days in zip(rows, (20, 2, 1), strict=True):
                conn.execute(
                    downloads.update()
                    .where(downloads.c.id == row.id)
                    .values(expires_ms=now_ms + days * 86_400_000)
                )
        order: list[int] = []
        settings = DownloadSettings(
            out=str(tmp_path / "out"), allow_origins=(server.url,), parallel=1
        )
        downloader = Downloader(
            store,
            dataclasses.replace(settings),
            on_event=lambda e: (
                order.append(e.download_id) if e.kind == "done" else None
            ),
        )
        await downloader.run(expiring_within_s=3 * 86_400)
        await downloader.aclose()
        by_id = {r.id: r for r in store.downloads.download_rows()}
        assert order == [rows[2].id, rows[1].id]
        assert by_id[rows[0].id].status == "pending"
        counts = store.downloads.download_counts(
            now_ms=now_ms, within_ms=30 * 86_400_000
        )
        assert counts == {"done": 2, "pending": 1, "expiring": 1}
