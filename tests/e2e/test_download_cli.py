"""``klingmon download`` takes the global download settings; each run picks places."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
from cli_support import cli_env, klingmon

from klingmon.api import AsyncKlingClient, Text2VideoRequest
from klingmon.engine import EngineSettings, Monitor
from klingmon.policy import SchedulePolicy
from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer

HTML = "<html><body>502 Bad Gateway</body></html>"


def _finish_without_downloads(server: SimServer, db: Path, prompts: list[str]) -> None:
    """Batch ``b`` run to success in-process, its files owed (saves two CLI starts)."""
    client = AsyncKlingClient(
        base_url=server.url,
        access_key=server.sim.config.access_key,
        secret_key=server.sim.config.secret_key,
    )
    fast = SchedulePolicy(
        target_lag=0.05, min_interval=0.02, max_interval=0.25, safety_interval=1.0
    )
    monitor = Monitor(
        store=Store.open(str(db)),
        client=client,
        settings=EngineSettings(
            rate=200.0, max_rate=500.0, schedule=fast, idle_max=0.1
        ),
    )
    monitor.submit([Text2VideoRequest(prompt=p) for p in prompts], batch="b")

    async def run() -> None:
        try:
            await monitor.run(batch="b")
        finally:
            await monitor.aclose()

    asyncio.run(run())


def _serve_html_once(server: SimServer, times: int = 1) -> None:
    """The next ``times`` result files are an HTML error page, with 200."""
    answer = httpx.post(
        f"{server.url}/admin/script",
        json={
            "route": "media",
            "status": 200,
            "body": HTML,
            "content_type": "text/html",
            "times": times,
        },
    )
    assert answer.status_code == 200, answer.text


def test_download_follows_global_settings_and_each_runs_folder(tmp_path: Path) -> None:
    """Default ./klingmon-downloads, --download-dir, --out: each file lands where
    the run that fetched it said, refusals quote the URL with its port."""
    config = SimConfig(
        admin=True, seed=31, time_scale=1000.0, faults=Faults(fail_rate=0.0)
    )
    db = tmp_path / "k.db"
    with SimServer(config) as server:
        env = cli_env(server, db)
        del env["KLINGMON_DOWNLOAD_DIR"], env["KLINGMON_DOWNLOAD_ORIGINS"]
        origin = ("--download-origin", server.url)

        def run(*args: str) -> tuple[int, str, str]:
            done = klingmon(*args, env=env, cwd=tmp_path)
            return done.returncode, done.stdout, done.stderr

        _finish_without_downloads(server, db, ["one", "two", "three"])

        _serve_html_once(server, times=2)
        code, first, err = run(*origin, "download", "b", "--parallel", "1")
        with Store.open(str(db)) as store:
            refused = [
                r for r in store.downloads.download_rows() if r.status == "refused"
            ]
        assert code == 4, err
        assert "Files under klingmon-downloads" in first
        assert len(refused) == 2
        for row in refused:
            path = httpx.URL(row.url).path
            line = (
                f"  refused: task {row.task_id} video 0: refused {server.url}{path}: "
                "answered Content-Type text/html, not a media file"
            )
            assert line in first.splitlines(), first

        _serve_html_once(server)
        deprecated = ("--allow-origin", server.url)
        code, _, err = run("--download-dir", "gd", "download", "b", *deprecated)
        assert code == 4
        warning = (
            "warning: download --allow-origin is deprecated; use the global "
            "--download-origin (or KLINGMON_DOWNLOAD_ORIGINS)"
        )
        assert warning in err.splitlines()

        code, last, err = run(*origin, "download", "b", "--out", "dl")
        assert code == 0, err
        assert "Downloads: 3 done. Files under dl; 2 downloaded before stay" in last
        with Store.open(str(db)) as store:
            rows = store.downloads.download_rows()
        expected = {r.id: server.sim.media_sha256(r.url) for r in rows}
    assert {r.status for r in rows} == {"done"}
    folders = []
    for row in rows:
        dest = Path(row.dest or "")
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == expected[row.id]
        assert row.sha256 == expected[row.id]
        folders.append(dest.relative_to(tmp_path).parts[0])
    assert sorted(folders) == ["dl", "gd", "klingmon-downloads"]
    assert not list(tmp_path.rglob("*.part"))
    assert not (tmp_path / "downloads").exists()
