"""Results of every kind downloaded from the simulator over loopback.

New-generation tasks (video, image set, audio, voice) are created on the simulator,
finished by moving its clock, adopted into a store from ``GET /tasks`` answers, and
fetched by the download manager: every file owed, named with its own extension,
hashed as the simulator serves it; ``watermark_url`` variants only on request.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from klingmon._clock import to_ms
from klingmon.api import snapshot_of
from klingmon.downloads import Downloader, DownloadSettings
from klingmon.sim import Faults, SimConfig
from klingmon.store import NewTask, Store
from klingmon.testing import SimServer, VirtualClock

if TYPE_CHECKING:
    from collections.abc import Iterator

KEY = {"Authorization": "Bearer sim-api-key"}
DAY = 86400.0
PATHS = {
    "video": "/text-to-video/kling-3.0",
    "image": "/image-generation/kling-3.0",
    "audio": "/text-to-audio/kling-audio",
    "voice": "/custom-voice/kling-voice",
}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[tuple[SimServer, httpx.Client, VirtualClock]]:
    clock = VirtualClock()
    config = SimConfig(admin=True, seed=5, faults=Faults(fail_rate=0))
    with (
        SimServer(config, clock) as server,
        httpx.Client(base_url=server.url, headers=KEY, timeout=10) as client,
    ):
        yield server, client, clock


def _adopt(
    client: httpx.Client, clock: VirtualClock, store: Store
) -> dict[str, dict[str, Any]]:
    """One finished task per kind, adopted into ``store``; Kling's objects by kind."""
    ids = {}
    for kind, path in PATHS.items():
        body: dict[str, Any] = {"prompt": f"a {kind} of a heron"}
        if kind == "image":
            body["n"] = 2
        answer = client.post(path, json=body)
        assert answer.status_code == 200, answer.text
        ids[kind] = answer.json()["data"]["id"]
    clock.advance(DAY)
    answer = client.get("/tasks", params={"task_ids": ",".join(ids.values())})
    by_id = {t["id"]: t for t in answer.json()["data"]}
    objects = {kind: by_id[ident] for kind, ident in ids.items()}
    assert all(o["status"] == "succeeded" for o in objects.values()), objects
    store.tasks.create_batch(
        "kinds",
        [
            NewTask(
                endpoint=PATHS[kind],
                body={"prompt": f"a {kind} of a heron"},
                external_task_id=f"km-{kind}",
                task=snapshot_of(obj),
            )
            for kind, obj in objects.items()
        ],
        to_ms(clock.now()),
    )
    return objects


def _settings(server: SimServer, out: Path, **changes: Any) -> DownloadSettings:
    return DownloadSettings(
        out=str(out),
        allow_origins=(server.url,),
        attempts=2,
        backoff_base=0.01,
        backoff_cap=0.02,
        **changes,
    )


async def _run(store: Store, settings: DownloadSettings, clock: VirtualClock) -> None:
    downloader = Downloader(store, settings, clock=clock)
    try:
        counts = await downloader.run()
    finally:
        await downloader.aclose()
    assert {k: n for k, n in counts.items() if n} == {"done": counts["done"]}


def test_every_kind_is_owed_fetched_named_and_hashed(rig, tmp_path: Path):
    server, client, clock = rig
    store = Store.open(str(tmp_path / "k.db"))
    objects = _adopt(client, clock, store)

    asyncio.run(_run(store, _settings(server, tmp_path / "out"), clock))
    rows = store.downloads.download_rows(None)
    kinds = sorted((r.kind, r.idx) for r in rows)
    # An image set of two, an audio's mp3 and wav as two files, a voice preview.
    assert kinds == [
        ("audio", 0),
        ("audio", 1),
        ("image", 0),
        ("image", 1),
        ("video", 0),
        ("voice", 0),
    ]
    suffixes = {(r.kind, r.idx): Path(r.dest or "").suffix for r in rows}
    assert suffixes[("audio", 0)] == ".mp3"
    assert suffixes[("audio", 1)] == ".wav"
    assert suffixes[("voice", 0)] == ".mp3"
    assert suffixes[("image", 0)] == ".png"
    assert suffixes[("video", 0)] == ".mp4"
    assert len({r.dest for r in rows}) == len(rows)  # no two files share a name
    for r in rows:
        served = client.get(r.url).content
        data = Path(r.dest or "").read_bytes()
        assert data == served, r
        assert r.sha256 == hashlib.sha256(served).hexdigest()
        assert Path(f"{r.dest}.json").exists()  # the sidecar
    # No watermarked variant unless asked for.
    assert objects["video"]["outputs"][0]["watermark_url"]
    assert not any(r.kind.endswith("-wm") for r in rows)
    store.close()


def test_watermarked_variants_on_request(rig, tmp_path: Path):
    server, client, clock = rig
    store = Store.open(str(tmp_path / "k.db"))
    objects = _adopt(client, clock, store)

    asyncio.run(_run(store, _settings(server, tmp_path / "out", watermark=True), clock))
    rows = {(r.kind, r.idx): r for r in store.downloads.download_rows(None)}
    video = rows[("video-wm", 0)]
    assert video.url == objects["video"]["outputs"][0]["watermark_url"]
    assert video.url.split("?")[0].endswith("-wm.mp4")
    assert Path(video.dest or "").name.endswith("-wm.mp4")
    assert Path(video.dest or "").read_bytes() == client.get(video.url).content
    assert Path(video.dest or "") != Path(rows[("video", 0)].dest or "")
    images = [k for k in rows if k[0] == "image-wm"]
    with_wm = [o for o in objects["image"]["outputs"] if o.get("watermark_url")]
    assert len(images) == len(with_wm)
    assert all(r.status == "done" for r in rows.values())
    store.close()
