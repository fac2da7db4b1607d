"""The dashboard's protection, actions and live event stream, over real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING

import httpx
import pytest
from dashboard_support import FAILING, TOKEN, app_for, client, finish_batch

from klingmon._clock import to_ms
from klingmon.api import Text2VideoRequest
from klingmon.domain import TaskStatus
from klingmon.downloads import DownloadSettings
from klingmon.engine import Monitor
from klingmon.policy import is_moderation_failure
from klingmon.store import Store
from klingmon.testing import AppServer, SimServer
from klingmon.web import Dashboard

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from dashboard_support import Finished


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    with SimServer(FAILING) as server:
        yield server


@pytest.fixture(scope="module")
def template(sim: SimServer, tmp_path_factory: pytest.TempPathFactory) -> Finished:
    return finish_batch(sim, tmp_path_factory.mktemp("dash"), download=False, n=6)


@pytest.fixture
def finished(template: Finished, tmp_path: Path) -> Finished:
    """A finished batch whose videos were not downloaded yet (a fresh copy)."""
    db = tmp_path / "k.db"
    shutil.copyfile(template.db, db)
    return dataclasses.replace(template, db=db, out=tmp_path / "out")


def _bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_read_only_dashboard_refuses_actions(finished: Finished) -> None:
    """Without a token, pages show and every action answers 403."""
    with Store.open(str(finished.db)) as store:
        async with client(app_for(store)) as http:
            page = await http.get("/batches/b")
            retry = await http.post("/actions/retry/b")
            download = await http.post("/actions/download/b")
            bearer = await http.post("/actions/retry/b", headers=_bearer("anything"))
        batches = [b.name for b in store.tasks.batches()]
    assert page.status_code == 200
    assert "disabled" in page.text
    assert retry.status_code == download.status_code == bearer.status_code == 403
    assert "--token" in retry.json()["detail"]
    assert batches == ["b"]


async def test_a_protected_dashboard_wants_the_token(finished: Finished) -> None:
    """With a token: 401 sign-in page without it, pages with a bearer or cookie."""
    with Store.open(str(finished.db)) as store:
        app = app_for(store, Dashboard(token=TOKEN))
        async with client(app) as http:
            anonymous = await http.get("/")
            stream = await http.get("/events")
            wrong = await http.get("/", headers=_bearer("wrong"))
            bad_login = await http.get("/login", params={"token": "wrong"})
            bearer = await http.get("/", headers=_bearer())
            login = await http.get("/login", params={"token": TOKEN})
            cookie = login.cookies.get("klingmon_session")
            with_cookie = await http.get("/batches/b")
            action = await http.post("/actions/retry/b")
    assert anonymous.status_code == stream.status_code == wrong.status_code == 401
    assert 'name="token"' in anonymous.text
    assert bad_login.status_code == 401
    assert bearer.status_code == 200
    assert login.status_code == 303
    assert cookie
    assert TOKEN not in cookie
    assert "samesite=strict" in login.headers["set-cookie"].lower()
    assert "httponly" in login.headers["set-cookie"].lower()
    assert with_cookie.status_code == 200
    assert "Retry failed tasks</button>" in with_cookie.text
    assert action.status_code == 303


async def test_sign_in_by_form_and_out(finished: Finished) -> None:
    """POST /login with the token signs in; /logout forgets the cookie."""
    with Store.open(str(finished.db)) as store:
        async with client(app_for(store, Dashboard(token=TOKEN))) as http:
            refused = await http.post("/login", content=b"token=nope")
            signed = await http.post("/login", content=f"token={TOKEN}".encode())
            inside = await http.get("/")
            out = await http.post("/logout")
            after = await http.get("/")
    assert refused.status_code == 401
    assert signed.status_code == 303
    assert inside.status_code == 200
    assert out.status_code == 303
    assert after.status_code == 401


async def test_retry_action_queues_the_failed_tasks_again(finished: Finished) -> None:
    """Retry makes b-retry (then b-retry-2) of the failed tasks and wakes the engine."""
    woken: list[bool] = []
    with Store.open(str(finished.db)) as store:
        ended = store.tasks.tasks(store.tasks.batch("b").id)  # type: ignore[union-attr]
        failed = {r.id for r in ended if r.status.value in {"failed", "rejected"}}
        moderated = {
            r.id
            for r in ended
            if is_moderation_failure(r.status, r.status_msg, r.last_error)
        }
        assert failed - moderated
        dashboard = Dashboard(token=TOKEN, wake=lambda: woken.append(True))
        async with client(app_for(store, dashboard)) as http:
            first = await http.post("/actions/retry/b", headers=_bearer())
            second = await http.post("/actions/retry/b", headers=_bearer())
            shown = await http.get(first.headers["location"], headers=_bearer())
        again = store.tasks.batch("b-retry")
        assert again is not None
        retried = {r.retry_of for r in store.tasks.tasks(again.id)}
        assert store.tasks.batch("b-retry-2") is not None
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == "/batches/b?done=retry&new=b-retry"
    assert "Retry batch b-retry created" in shown.text
    assert retried == failed - moderated  # moderated ones would fail the same way
    assert woken == [True, True]


async def test_cancel_action_cancels_the_unsent_tasks(finished: Finished) -> None:
    """Cancel needs the token; queued tasks become cancelled, finished ones stay."""
    with Store.open(str(finished.db)) as store:
        requests = [Text2VideoRequest(prompt=f"later {i}") for i in range(3)]
        later = Monitor(store=store).submit(requests, batch="later")
        before = store.tasks.count_by_status(store.tasks.batch("b").id)  # type: ignore[union-attr]
        async with client(app_for(store)) as http:
            read_only = await http.post("/actions/cancel/later")
        async with client(app_for(store, Dashboard(token=TOKEN))) as http:
            anonymous = await http.post("/actions/cancel/later")
            page = await http.get("/batches/later", headers=_bearer())
            done = await http.post("/actions/cancel/later", headers=_bearer())
            shown = await http.get(done.headers["location"], headers=_bearer())
            finished_batch = await http.post("/actions/cancel/b", headers=_bearer())
            missing = await http.post("/actions/cancel/nope", headers=_bearer())
        counts = store.tasks.count_by_status(later.id)
        events = store.outbox.events(batch_id=later.id)
        after = store.tasks.count_by_status(store.tasks.batch("b").id)  # type: ignore[union-attr]
    assert read_only.status_code == 403
    assert anonymous.status_code == 401
    assert "Cancel unsent tasks</button>" in page.text
    assert done.status_code == 303
    assert done.headers["location"] == "/batches/later?done=cancel&new=3"
    assert "Cancelled 3 tasks that were never sent" in shown.text
    assert "Cancel unsent tasks</button>" not in shown.text
    assert counts == {TaskStatus.CANCELLED: 3}
    assert [e.new_status for e in events] == [TaskStatus.CANCELLED] * 3
    assert finished_batch.headers["location"] == "/batches/b?done=cancel&new=0"
    assert after == before
    assert missing.status_code == 404


async def test_priority_action_changes_it_with_the_token(finished: Finished) -> None:
    """Setting a priority needs the token; it is stored, an event, and shown."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with Store.open(str(finished.db)) as store:
        requests = [Text2VideoRequest(prompt=f"later {i}") for i in range(2)]
        later = Monitor(store=store).submit(requests, batch="later")
        async with client(app_for(store)) as http:
            read_only = await http.post(
                "/actions/priority/later", content="priority=5", headers=form
            )
            page_ro = await http.get("/batches/later")
        async with client(app_for(store, Dashboard(token=TOKEN))) as http:
            anonymous = await http.post(
                "/actions/priority/later", content="priority=5", headers=form
            )
            page = await http.get("/batches/later", headers=_bearer())
            done = await http.post(
                "/actions/priority/later",
                content="priority=-3",
                headers=form | _bearer(),
            )
            shown = await http.get(done.headers["location"], headers=_bearer())
            bad = await http.post(
                "/actions/priority/later",
                content="priority=soon",
                headers=form | _bearer(),
            )
            huge = await http.post(
                "/actions/priority/later",
                content="priority=99999999999",
                headers=form | _bearer(),
            )
            missing = await http.post(
                "/actions/priority/nope", content="priority=1", headers=form | _bearer()
            )
            overview = await http.get("/", headers=_bearer())
        row = store.tasks.batch(later.id)
        events = [
            e for e in store.outbox.events(batch_id=later.id) if e.kind == "priority"
        ]
    assert read_only.status_code == 403
    assert anonymous.status_code == 401
    assert "Set priority</button>" in page_ro.text
    assert 'name="priority"' not in page_ro.text
    assert 'name="priority"' in page.text
    assert done.status_code == 303
    assert done.headers["location"] == "/batches/later?done=priority&new=-3"
    assert "Priority set to -3" in shown.text
    assert '<dd id="priority">-3</dd>' in shown.text
    assert "<dt>Priority</dt><dd>-3</dd>" in overview.text
    assert bad.status_code == 400
    assert "integer" in bad.json()["detail"]
    assert huge.status_code == 400
    assert missing.status_code == 404
    assert row is not None
    assert row.priority == -3
    assert [e.payload for e in events] == [{"old": 0, "new": -3, "by": "dashboard"}] * 2


async def test_approve_and_resume_actions_let_held_batches_go_on(
    finished: Finished,
) -> None:
    """A held batch shows its badge; approve and resume (a new cap) need the token."""
    with Store.open(str(finished.db)) as store:
        requests = [Text2VideoRequest(prompt=f"held {i}") for i in range(2)]
        held = Monitor(store=store).submit(requests, batch="held", hold=True)
        capped = Monitor(store=store).submit(requests, batch="capped", max_units=0)
        store.tasks.claim_submissions("w", to_ms(time.time()), 1000, slots=50)
        async with client(app_for(store, Dashboard(token=TOKEN))) as http:
            anonymous = await http.post("/actions/approve/held")
            overview = await http.get("/", headers=_bearer())
            page = await http.get("/batches/capped", headers=_bearer())
            approved = await http.post("/actions/approve/held", headers=_bearer())
            again = await http.post("/actions/approve/held", headers=_bearer())
            resumed = await http.post(
                "/actions/resume/capped", headers=_bearer(), data={"max_units": "9"}
            )
            bad = await http.post(
                "/actions/resume/capped", headers=_bearer(), data={"max_units": "x"}
            )
        after_held = store.tasks.batch(held.id)
        after_capped = store.tasks.batch(capped.id)
    assert anonymous.status_code == 401
    assert "awaiting approval</span>" in overview.text
    assert "paused: budget</span>" in page.text
    assert "Resume</button>" in page.text
    assert approved.headers["location"] == "/batches/held?done=approved"
    assert again.headers["location"] == "/batches/held?done=not_held"
    assert resumed.headers["location"] == "/batches/capped?done=resumed"
    assert bad.status_code == 422
    assert after_held is not None
    assert after_held.state is None
    assert after_capped is not None
    assert (after_capped.state, after_capped.max_units) == (None, 9.0)


async def test_cross_site_posts_are_refused(finished: Finished) -> None:
    """A form posted from another origin is refused even with the cookie."""
    with Store.open(str(finished.db)) as store:
        async with client(app_for(store, Dashboard(token=TOKEN))) as http:
            await http.get("/login", params={"token": TOKEN})
            evil = {"Origin": "https://evil.example"}
            answer = await http.post("/actions/retry/b", headers=evil)
            same = await http.post(
                "/actions/retry/b", headers={"Origin": "http://localhost"}
            )
    assert answer.status_code == 403
    assert same.status_code == 303


async def test_download_now_fetches_the_owed_files(
    finished: Finished, sim: SimServer
) -> None:
    """The action downloads the batch's results in the background."""
    settings = DownloadSettings(out=str(finished.out), allow_origins=(sim.url,))
    with Store.open(str(finished.db)) as store:
        dashboard = Dashboard(
            token=TOKEN, download_dir=str(finished.out), downloads=settings
        )
        async with client(app_for(store, dashboard)) as http:
            answer = await http.post("/actions/download/b", headers=_bearer())
            assert answer.status_code == 303
            job = dashboard.running[store.tasks.batch("b").id]  # type: ignore[union-attr]
            await asyncio.wait_for(job, timeout=20)
            rows = store.downloads.download_rows()
            preview = await http.get(f"/files/{rows[0].id}", headers=_bearer())
    assert rows
    assert {r.status for r in rows} == {"done"}
    assert preview.status_code == 200


async def test_download_now_needs_download_settings(finished: Finished) -> None:
    """Without download settings the action is a 409, not a silent no-op."""
    with Store.open(str(finished.db)) as store:
        async with client(app_for(store, Dashboard(token=TOKEN))) as http:
            answer = await http.post("/actions/download/b", headers=_bearer())
    assert answer.status_code == 409


def _next_event(lines: Iterator[str], deadline: float) -> dict[str, str]:
    """The next complete server-sent event's fields."""
    fields: dict[str, str] = {}
    for line in lines:
        assert time.monotonic() < deadline, "no event in time"
        if not line:
            if "data" in fields:
                return fields
            continue
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    raise AssertionError("the stream ended")


def test_event_stream_reports_a_change_at_once(finished: Finished) -> None:
    """/events sends the current mark, then a new one soon after a store write."""
    with Store.open(str(finished.db)) as store:
        dashboard = Dashboard(poll_interval=0.05)
        app = app_for(store, dashboard)
        task = store.tasks.tasks()[0]
        with (
            AppServer(app) as server,
            httpx.stream(
                "GET", f"{server.url}/events?batch={task.batch_id}", timeout=5
            ) as stream,
        ):
            assert stream.headers["content-type"].startswith("text/event-stream")
            lines = stream.iter_lines()
            assert next(lines) == "retry: 1000"
            first = _next_event(lines, time.monotonic() + 5)
            started = time.monotonic()
            store.watch.flag(task.id, "stuck", to_ms(time.time()), {})
            second = _next_event(lines, time.monotonic() + 5)
            latency = time.monotonic() - started
            dashboard.close()
    assert first["data"] != second["data"]
    assert second["id"] in second["data"]
    assert latency < 1.0


def test_event_stream_resumes_from_the_last_event_id(finished: Finished) -> None:
    """A reconnect with Last-Event-ID hears nothing until the store changes."""
    with Store.open(str(finished.db)) as store:
        dashboard = Dashboard(poll_interval=0.05, stream_seconds=0.5)
        app = app_for(store, dashboard)
        with AppServer(app) as server:
            with httpx.stream("GET", f"{server.url}/events", timeout=5) as stream:
                lines = stream.iter_lines()
                mark = _next_event(lines, time.monotonic() + 5)["id"]
            # The stream ends by itself after stream_seconds: nothing new to say.
            again = httpx.get(
                f"{server.url}/events", headers={"Last-Event-ID": mark}, timeout=5
            )
    assert again.status_code == 200
    assert again.text.strip() == "retry: 1000"


def test_event_stream_ends_when_the_dashboard_closes(finished: Finished) -> None:
    """close() ends open streams, so the server can stop at once."""
    with Store.open(str(finished.db)) as store:
        dashboard = Dashboard(poll_interval=0.05)
        with AppServer(app_for(store, dashboard)) as server:
            with httpx.stream("GET", f"{server.url}/events", timeout=5) as stream:
                lines = stream.iter_lines()
                _next_event(lines, time.monotonic() + 5)
                dashboard.close()
                started = time.monotonic()
                rest = list(lines)
            ended = time.monotonic() - started
    assert rest == []
    assert ended < 2


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    """klingmon serve --host 0.0.0.0 without --token exits before listening."""
    env = {"KLINGMON_DB": str(tmp_path / "k.db"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-m", "klingmon", "serve", "--host", "0.0.0.0"],  # noqa: S104
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert "without --token" in done.stderr
