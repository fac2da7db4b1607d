"""Callbacks cannot steer a task: what a token holder without a signature achieves.

The attacker of issue 13 holds a task's callback URL (it leaked from a log) but not
Kling's webhook secret. Over loopback to the real receiver, they try to rewrite the
result, units, message and clock of a task; the JSON API and the dashboard show
that nothing but the status hint moved.
"""

from __future__ import annotations

import json

import httpx
import pytest
from receiver_support import fresh_clock, tracked_store, url
from web_support import ENDPOINT, SECRET, WHSEC, body

from klingmon._clock import to_ms
from klingmon.api import Task, snapshot
from klingmon.sim import sign_webhook
from klingmon.store import NewTask, Observation
from klingmon.store._convert import KLING_SKEW_MS
from klingmon.testing import AppServer
from klingmon.web import ReceiverSettings, callback_token, create_app

EVIL_URL = "https://attacker.example/pwn.mp4"
YEAR_2058_MS = 2_800_000_000_000
FORGED = {
    "task_status_msg": "<b>pwn</b>",
    "final_unit_deduction": "9999",
    "updated_at": YEAR_2058_MS,
    "created_at": YEAR_2058_MS,
    "task_result": {"videos": [{"id": "v", "url": EVIL_URL, "duration": "5"}]},
}
#: What a forged callback must not change, as /api/tasks/N shows it.
DATA = ("result", "units", "status_msg", "kling_updated_ms", "kling_created_ms")


@pytest.fixture
def rig(tmp_path):
    """Tracked tasks km-0, km-1 (and km-q, never sent) behind the real receiver."""
    clock = fresh_clock()
    with tracked_store(tmp_path, clock) as store:
        queued = NewTask(
            endpoint=ENDPOINT, body={"prompt": "q"}, external_task_id="km-q"
        )
        store.tasks.create_batch("q", [queued], to_ms(clock.now()))
        app = create_app(store, secret=SECRET, clock=clock)
        with AppServer(app) as server, httpx.Client(base_url=server.url) as http:
            yield http, store, clock


def _task(http: httpx.Client, ref: str) -> dict:
    answer = http.get(f"/api/tasks/{ref}")
    assert answer.status_code == 200
    return answer.json()


def _leaks(text: str) -> list[str]:
    return [s for s in (EVIL_URL, "attacker.example", "pwn", "9999") if s in text]


def test_an_unsigned_processing_callback_moves_only_the_status(rig):
    """Result, units, message and Kling times stay; the status hint moves."""
    http, _, clock = rig
    before = _task(http, "km-0")
    answer = http.post(url(0), content=body(0, "processing", clock, **FORGED))
    assert answer.status_code == 200
    after = _task(http, "km-0")
    assert after["status"] == "processing"
    assert {k: after[k] for k in DATA} == {k: before[k] for k in DATA}
    assert after["result"] is None
    assert after["units"] is None
    page = http.get(f"/tasks/{after['id']}").text
    events = http.get("/api/tasks/km-0/events").text
    assert _leaks(page) == []
    assert _leaks(events) == []
    assert _leaks(http.get("/").text + http.get("/batches/b").text) == []


def test_an_unsigned_terminal_callback_changes_no_data(rig):
    """A forged succeed is a hint to confirm: no result, no file owed, no data."""
    http, store, clock = rig
    before = _task(http, "km-1")
    answer = http.post(url(1), content=body(1, "succeed", clock, **FORGED))
    assert answer.status_code == 202
    after = _task(http, "km-1")
    assert after["status"] == "submitted"
    assert {k: after[k] for k in DATA} == {k: before[k] for k in DATA}
    assert store.downloads.download_rows(task_id=after["id"]) == []
    assert _leaks(http.get("/api/tasks/km-1/events").text) == []
    assert _leaks(http.get(f"/tasks/{after['id']}").text) == []


def test_a_callback_cannot_give_a_task_its_kling_id(rig):
    """A task Kling's own answers never named keeps no task_id from a callback,
    and the submitter's lease on it stays (its create may be under way)."""
    http, store, clock = rig
    (leased,) = store.tasks.claim_submissions(
        "worker-1", to_ms(clock.now()), 60_000, slots=5
    )
    assert leased.external_task_id == "km-q"
    token = callback_token(SECRET, "km-q")
    raw = body(0, "processing", clock, task_id="kt-victim")
    raw = raw.replace(b'"km-0"', b'"km-q"')
    answer = http.post(f"/callbacks/kling/{token}", content=raw)
    assert answer.status_code == 202  # a hint: the engine looks it up itself
    found = _task(http, "km-q")
    assert found["task_id"] is None
    assert found["status"] == "queued"
    assert found["next_poll_ms"] is None
    assert store.tasks.task("km-q").lease_owner == "worker-1"


def test_without_a_token_known_and_unknown_tasks_answer_alike(rig):
    """No oracle: a tracked and an untracked id get the same status and body."""
    http, _, clock = rig
    wrong = "/callbacks/kling/" + callback_token(b"x" * 32, "km-0")
    known = http.post(wrong, content=body(0, "processing", clock))
    unknown = http.post(
        wrong,
        content=body(
            0,
            "processing",
            clock,
            task_id="kt-404",
            task_info={"external_task_id": "km-404"},
        ),
    )
    bare = http.post(
        wrong, content=json.dumps({"task_id": "kt-405", "task_status": "processing"})
    )
    assert known.status_code == unknown.status_code == bare.status_code == 403
    assert known.json() == unknown.json() == bare.json()
    assert _task(http, "km-0")["status"] == "submitted"


def test_kling_times_are_clamped_on_every_source(tmp_path):
    """A signed callback and a poll from 2058 set the task's clock to now + skew."""
    clock = fresh_clock()
    now_ms = to_ms(clock.now())
    with tracked_store(tmp_path, clock) as store:
        settings = ReceiverSettings(webhook_secret=WHSEC)
        app = create_app(store, secret=SECRET, settings=settings, clock=clock)
        raw = body(0, "processing", clock, updated_at=YEAR_2058_MS)
        stamp = int(clock.now())
        headers = {
            "content-type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": sign_webhook(WHSEC, "msg_1", stamp, raw),
        }
        with AppServer(app) as server, httpx.Client(base_url=server.url) as http:
            assert http.post(url(0), content=raw, headers=headers).status_code == 200
            signed = _task(http, "km-0")
        polled = Task(
            task_id="kt-1",
            task_status="processing",
            created_at=YEAR_2058_MS,
            updated_at=YEAR_2058_MS,
        )
        row = store.tasks.task("km-1")
        store.watch.apply(
            [Observation(row.id, snapshot(polled), "poll", now_ms)], now_ms
        )
        seen = store.tasks.task("km-1")
    assert signed["kling_updated_ms"] == now_ms + KLING_SKEW_MS
    assert seen.kling_updated_ms == seen.kling_created_ms == now_ms + KLING_SKEW_MS
