"""The dashboard's /files/<id> serves a done file where the store says it landed."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_support import Finished, app_for, client, finish_batch

from klingmon.sim import Faults, SimConfig
from klingmon.store import Store
from klingmon.testing import SimServer
from klingmon.web import Dashboard


@pytest.fixture
def finished(tmp_path: Path) -> Finished:
    """Two tasks done, their videos downloaded under ``tmp_path/out``."""
    config = SimConfig(
        admin=True, seed=7, time_scale=1000.0, faults=Faults(fail_rate=0.0)
    )
    with SimServer(config) as server:
        return finish_batch(server, tmp_path, n=2)


async def test_preview_follows_the_recorded_path_and_size(
    finished: Finished, tmp_path: Path
) -> None:
    """A file outside the dashboard's folder is served; once changed in size, not."""
    dashboard = Dashboard(download_dir=str(tmp_path / "another-folder"))
    with Store.open(str(finished.db)) as store:
        first, second = store.downloads.download_rows()
        assert first.status == second.status == "done"
        data = Path(first.dest or "").read_bytes()
        grown = Path(second.dest or "")
        with grown.open("ab") as f:
            f.write(b"appended later")
        store.downloads.requeue_downloads([second.id])
        async with client(app_for(store, dashboard)) as http:
            served = await http.get(f"/files/{first.id}")
            owed = await http.get(f"/files/{second.id}")
        store.downloads.download_done(
            second.id, 0, size=second.size or 0, sha256="0" * 64
        )
        async with client(app_for(store, dashboard)) as http:
            changed = await http.get(f"/files/{second.id}")
    assert served.status_code == 200
    assert served.content == data
    assert owed.status_code == 404  # not done: nothing to preview
    assert changed.status_code == 404  # no longer the size recorded
