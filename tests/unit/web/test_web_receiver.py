"""The callback route: lifecycle rules, confirmation, forgeries refused, no 5xx."""

from __future__ import annotations

import pytest
from web_support import (
    SECRET,
    WHSEC,
    app_for,
    body,
    client,
    fresh_clock,
    snapshot,
    tracked_store,
    url,
)

from klingmon._clock import to_ms
from klingmon.domain import TaskStatus
from klingmon.sim import sign_webhook
from klingmon.web import Receiver, ReceiverSettings, callback_token


@pytest.fixture
def clock():
    return fresh_clock()


@pytest.fixture
def store(tmp_path, clock):
    with tracked_store(tmp_path, clock) as s:
        yield s


def _signed(raw: bytes, stamp: int, msg_id: str = "msg_1") -> dict[str, str]:
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign_webhook(WHSEC, msg_id, stamp, raw),
    }


async def test_processing_callback_is_applied_and_noted(store, clock):
    """A processing callback moves the task and tells the engine: not a finish."""
    woken: list[tuple[str, bool]] = []
    async with client(app_for(store, clock, woken=woken)) as http:
        answer = await http.post(url(0), content=body(0, "processing", clock))
    assert answer.status_code == 200
    assert answer.json() == {"status": "applied"}
    assert store.tasks.task("km-0").status == TaskStatus.PROCESSING
    assert store.tasks.task("km-0").learned_via == "callback"
    assert woken == [("/v1/videos/text2video", False)]


async def test_unsigned_terminal_is_a_hint_confirmed_by_a_poll(store, clock):
    """An unsigned succeed is not applied: recorded as a hint, the task is due now."""
    woken: list[tuple[str, bool]] = []
    async with client(app_for(store, clock, woken=woken)) as http:
        answer = await http.post(url(0), content=body(0, "succeed", clock))
    assert answer.status_code == 202
    assert woken == [("/v1/videos/text2video", True)]  # a slot frees: wake
    row = store.tasks.task("km-0")
    assert row.status == TaskStatus.SUBMITTED
    assert row.next_poll_ms <= to_ms(clock.now())
    kinds = [(e.source, e.kind) for e in store.outbox.events(task_id=row.id)]
    assert ("callback", "hint") in kinds


async def test_unsigned_terminal_applies_when_confirmation_is_off(store, clock):
    """With --no-confirm an unsigned terminal status is applied at once."""
    woken: list[tuple[str, bool]] = []
    async with client(app_for(store, clock, confirm=False, woken=woken)) as http:
        answer = await http.post(url(0), content=body(0, "failed", clock))
        again = await http.post(url(0), content=body(0, "failed", clock))
    assert answer.status_code == again.status_code == 200
    # The first frees a slot; the repeat changes nothing and wakes nothing.
    assert woken == [("/v1/videos/text2video", True), ("/v1/videos/text2video", False)]
    assert store.tasks.task("km-0").status == TaskStatus.FAILED


async def test_signed_terminal_applies_and_duplicates_are_dropped(store, clock):
    """A signed terminal status is trusted; a repeated webhook-id is applied once."""
    raw = body(0, "succeed", clock)
    app = app_for(store, clock, webhook_secret=WHSEC)
    async with client(app) as http:
        first = await http.post(
            url(0), content=raw, headers=_signed(raw, int(clock.now()))
        )
        again = await http.post(
            url(0), content=raw, headers=_signed(raw, int(clock.now()))
        )
    assert first.json() == {"status": "applied"}
    assert again.json() == {"status": "duplicate"}
    assert store.tasks.task("km-0").status == TaskStatus.SUCCEED


async def test_out_of_order_and_duplicate_callbacks_never_regress(store, clock):
    """processing after failed, and the same callback twice, change nothing more."""
    async with client(app_for(store, clock, confirm=False)) as http:
        await http.post(url(1), content=body(1, "failed", clock))
        late = await http.post(url(1), content=body(1, "processing", clock))
        twice = await http.post(url(1), content=body(1, "failed", clock))
    assert late.status_code == twice.status_code == 200
    assert store.tasks.task("km-1").status == TaskStatus.FAILED
    statuses = [
        e.new_status
        for e in store.outbox.events(task_id=store.tasks.task("km-1").id)
        if e.kind == "status"
    ]
    assert statuses.count(TaskStatus.FAILED) == 1


@pytest.mark.parametrize(
    ("path", "make", "headers", "code", "error"),
    [
        (url(0).replace(url(0)[-6:], "AAAAAA"), "ok", {}, 403, "bad_token"),
        (url(1), "ok", {}, 403, "bad_token"),  # token of another task
        (
            "/callbacks/kling/" + callback_token(b"x" * 32, "km-0"),
            "ok",
            {},
            403,
            "bad_token",
        ),
        (url(0), "unknown", {}, 403, "bad_token"),  # no oracle for tracked ids
        (url(9), "unknown", {}, 404, "unknown_task"),  # the id's own token
        (url(0), "mismatch", {}, 409, "task_mismatch"),
        (url(0), "huge", {}, 413, "too_large"),
        (url(0), "notjson", {}, 400, "malformed"),
        (url(0), "array", {}, 400, "malformed"),
        (url(0), "invalid", {}, 422, "invalid"),
    ],
)
async def test_forged_and_bad_callbacks_are_refused_and_change_nothing(  # noqa: PLR0917
    store, clock, path, make, headers, code, error
):
    """Wrong token, another task's token, unknown task, oversized or malformed: 4xx."""
    raw = {
        "ok": body(0, "succeed", clock),
        "unknown": body(
            0, "succeed", clock, task_id="kt-9", task_info={"external_task_id": "km-9"}
        ),
        "mismatch": body(0, "succeed", clock, task_id="kt-1"),
        "huge": body(0, "succeed", clock, task_status_msg="x" * 70_000),
        "notjson": b"{not json",
        "array": b"[]",
        "invalid": b'{"task_id": 5}',
    }[make]
    before = snapshot(store)
    async with client(app_for(store, clock, confirm=False)) as http:
        answer = await http.post(path, content=raw, headers=headers)
    assert answer.status_code == code
    assert answer.json()["error"] == error
    assert snapshot(store) == before


@pytest.mark.parametrize("case", ["unsigned", "stale", "wrong", "future"])
async def test_bad_signatures_are_refused_when_signing_is_on(store, clock, case):
    """With a whsec_ secret: unsigned, stale, wrongly signed deliveries get 401."""
    raw = body(0, "succeed", clock)
    now = int(clock.now())
    headers = {
        "unsigned": {},
        "stale": _signed(raw, now - 301),
        "future": _signed(raw, now + 301),
        "wrong": _signed(raw, now) | {"webhook-signature": "v1,AAAA"},
    }[case]
    before = snapshot(store)
    async with client(app_for(store, clock, webhook_secret=WHSEC)) as http:
        answer = await http.post(url(0), content=raw, headers=headers)
    assert answer.status_code == 401
    assert answer.json()["error"] == "bad_signature"
    assert snapshot(store) == before


async def test_callback_for_a_final_task_is_ignored(store, clock):
    """Once final, later callbacks are answered 200 and ignored."""
    async with client(app_for(store, clock, confirm=False)) as http:
        await http.post(url(0), content=body(0, "succeed", clock))
        answer = await http.post(url(0), content=body(0, "failed", clock))
    assert answer.json() == {"status": "ignored"}
    assert store.tasks.task("km-0").status == TaskStatus.SUCCEED


def test_secrets_are_not_in_reprs(store):
    """Neither ReceiverSettings nor Receiver shows a secret."""
    receiver = Receiver(store, SECRET, ReceiverSettings(webhook_secret=WHSEC))
    assert SECRET.decode() not in repr(receiver)
    assert WHSEC not in repr(receiver)
    assert WHSEC not in repr(ReceiverSettings(webhook_secret=WHSEC))
    assert SECRET.decode() not in repr(ReceiverSettings())
