"""The dashboard's pages over a real store: what they show, what they never show."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from dashboard_support import FAILING, app_for, client, finish_batch

from klingmon.store import NewTask, Store
from klingmon.store._schema import downloads
from klingmon.testing import SimServer
from klingmon.web import Dashboard

if TYPE_CHECKING:
    from collections.abc import Iterator

    from dashboard_support import Finished


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """One finished batch with failures and downloaded videos, shared read-only."""
    with SimServer(FAILING) as server:
        return finish_batch(server, tmp_path_factory.mktemp("dash"))


@pytest.fixture
def store(finished: Finished) -> Iterator[Store]:
    with Store.open(str(finished.db)) as found:
        yield found


def _dashboard(finished: Finished) -> Dashboard:
    return Dashboard(download_dir=str(finished.out), slots=5)


async def test_overview_shows_each_batch_with_its_figures(
    finished: Finished, store: Store
) -> None:
    """The overview: batch link, split progress bar, counts, slots and workers."""
    async with client(app_for(store, _dashboard(finished))) as http:
        page = await http.get("/")
    assert page.status_code == 200
    text = page.text
    counts = store.tasks.count_by_status(store.tasks.batch("b").id)  # type: ignore[union-attr]
    assert 'href="/batches/b"' in text
    assert f"{sum(counts.values())} / {sum(counts.values())} done" in text
    for status, n in counts.items():
        assert f"{n} {status.value}" in text
    assert "Slots in use" in text
    assert "Workers alive" in text
    assert 'class="s-succeed"' in text
    assert 'class="s-failed"' in text


async def test_batch_page_lists_tasks_and_filters_by_status(
    finished: Finished, store: Store
) -> None:
    """Every task has a row; ?status=failed keeps only the failed ones."""
    batch = store.tasks.batch("b")
    assert batch is not None
    rows = store.tasks.tasks(batch.id)
    failed = [r for r in rows if r.status.value == "failed"]
    assert failed, "the simulator should have failed some tasks"
    async with client(app_for(store, _dashboard(finished))) as http:
        whole = (await http.get("/batches/b")).text
        only = (await http.get("/batches/b", params={"status": "failed"})).text
        by_id = await http.get(f"/batches/{batch.id}")
    assert whole.count('<tr id="t-') == len(rows)
    assert only.count('<tr id="t-') == len(failed)
    assert all(f'id="t-{r.id}"' in only for r in failed)
    assert by_id.status_code == 200
    assert "Processing times" in whole
    assert "<rect" in whole.split('id="histogram"')[1]
    assert 'src="/files/' in whole
    assert failed[0].status_msg is not None
    assert failed[0].status_msg[:20] in only


async def test_fragment_is_only_the_live_part(finished: Finished, store: Store) -> None:
    """?fragment=1 answers the sections the page script swaps, without the shell."""
    async with client(app_for(store, _dashboard(finished))) as http:
        whole = (await http.get("/batches/b")).text
        part = (await http.get("/batches/b", params={"fragment": 1})).text
    assert "<html" in whole
    assert "<html" not in part
    assert part.lstrip().startswith('<section id="summary"')
    assert 'data-stream="/events?batch=' in whole


async def test_task_page_shows_timeline_request_and_result(
    finished: Finished, store: Store
) -> None:
    """A succeeded task's page: its events in order, the request, result, expiry."""
    row = next(r for r in store.tasks.tasks() if r.status.value == "succeed")
    events = store.outbox.events(task_id=row.id)
    async with client(app_for(store, _dashboard(finished))) as http:
        by_id = await http.get(f"/tasks/{row.id}")
        by_kling_id = await http.get(f"/tasks/{row.task_id}")
    assert by_id.status_code == by_kling_id.status_code == 200
    text = by_id.text
    files = store.downloads.download_rows(task_id=row.id)
    assert files
    assert text.count('<li id="e-') == len(events) + 2 * len(files)
    positions = [text.index(f'id="e-{e.id}"') for e in events]
    assert positions == sorted(positions)
    assert text.index('id="e-{}"'.format(f"f{files[0].id}b")) > positions[0]
    assert "submit" in text
    assert "queued → submitted" in text or "submitting → submitted" in text
    assert "Request as sent" in text
    assert "Results expire" in text
    assert "videos" in text.split('id="result"')[1]
    assert '<video controls preload="metadata"' in text


async def test_requests_never_show_secrets_or_whole_images(tmp_path: Path) -> None:
    """Keys that look secret are hidden; a long base64 image is cut short."""
    with Store.open(str(tmp_path / "s.db")) as store:
        image = "A" * 5000
        body = {
            "prompt": "p",
            "image": image,
            "callback_url": "https://me.example/callbacks/kling/TOKENVALUE",
            "api_key": "sk-SECRETVALUE",
            "nested": {"client_secret": "SECRETVALUE2"},
        }
        store.tasks.create_batch(
            "s", [NewTask(endpoint="/v1/videos/image2video", body=body)], 1
        )
        async with client(app_for(store)) as http:
            text = (await http.get("/tasks/1")).text
    for secret in ("TOKENVALUE", "SECRETVALUE", "SECRETVALUE2"):
        assert secret not in text
    assert image not in text
    assert "5000 characters" in text
    assert "(hidden)" in text


async def test_markup_from_prompts_is_escaped(finished: Finished, store: Store) -> None:
    """A prompt with a script tag is shown as text on every page."""
    async with client(app_for(store, _dashboard(finished))) as http:
        pages = [
            (await http.get(path)).text for path in ("/", "/batches/b", "/tasks/1")
        ]
    for text in pages:
        assert "<script>alert(1)" not in text
    assert "&lt;script&gt;alert(1)" in pages[1]


async def test_pages_carry_a_content_security_policy(store: Store) -> None:
    """Pages forbid inline script, framing and third-party origins."""
    async with client(app_for(store)) as http:
        page = await http.get("/")
        script = await http.get("/static/dashboard.js")
        style = await http.get("/static/dashboard.css")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert script.status_code == style.status_code == 200
    assert "EventSource" in script.text
    assert "http" not in script.text.replace("http-equiv", "")


async def test_unknown_batches_and_tasks_are_not_found(store: Store) -> None:
    """Missing refs answer 404, huge ones too."""
    async with client(app_for(store)) as http:
        for path in ("/batches/nope", "/tasks/999999", "/tasks/" + "9" * 40):
            assert (await http.get(path)).status_code == 404, path


async def test_preview_serves_a_downloaded_video_with_ranges(
    finished: Finished, store: Store
) -> None:
    """/files/<id> answers the file's bytes, and a 206 part for a Range."""
    row = next(r for r in store.downloads.download_rows() if r.status == "done")
    assert row.dest is not None
    data = Path(row.dest).read_bytes()
    async with client(app_for(store, _dashboard(finished))) as http:
        whole = await http.get(f"/files/{row.id}")
        part = await http.get(f"/files/{row.id}", headers={"Range": "bytes=4-11"})
    assert whole.status_code == 200
    assert whole.headers["content-type"] == "video/mp4"
    assert whole.content == data
    assert part.status_code == 206
    assert part.content == data[4:12]


async def test_preview_serves_only_the_recorded_file(
    finished: Finished, tmp_path: Path
) -> None:
    """A row pointing at another file (path or symlink) is never served."""
    copy = tmp_path / "copy.db"
    copy.write_bytes(finished.db.read_bytes())
    outside = tmp_path / "secret.txt"
    outside.write_text("do not serve")
    link = finished.out / "link.mp4"
    if not link.exists():
        link.symlink_to(outside)
    engine = sa.create_engine(f"sqlite:///{copy}")
    with Store.open(str(copy)) as store:
        done = [r.id for r in store.downloads.download_rows() if r.status == "done"]
        with engine.begin() as conn:
            for row_id, dest in zip(done, (str(outside), str(link)), strict=False):
                conn.execute(
                    downloads.update().where(downloads.c.id == row_id).values(dest=dest)
                )
        engine.dispose()
        async with client(app_for(store, _dashboard(finished))) as http:
            answers = [(await http.get(f"/files/{i}")).status_code for i in done[:2]]
            unknown = await http.get("/files/987654")
            not_a_number = await http.get("/files/..%2F..%2Fetc%2Fpasswd")
        async with client(app_for(store, Dashboard())) as http:
            no_dir = await http.get(f"/files/{done[2]}")
    assert answers == [404, 404]
    assert unknown.status_code == 404
    assert not_a_number.status_code in {404, 422}
    assert no_dir.status_code == 200  # served where it landed, whatever the folder
