"""The shared operations (retry, create ambiguity, wait) driven by scripted answers."""

from __future__ import annotations

import json
import random

import httpx
import pytest
from kling_fakes import answer, drive, envelope, task

from klingmon.api import RetryPolicy, Task, Text2VideoRequest
from klingmon.api._ops import Operations
from klingmon.errors import (
    AuthError,
    ConcurrencyLimitError,
    InvalidRequestError,
    PolicyError,
    RateLimitError,
    SchemaDriftError,
    ServerError,
    TaskFailedError,
    TaskNotFoundError,
    TransportError,
    UnexpectedResponseError,
    WaitTimeoutError,
)

PATH = "/v1/videos/text2video"
REQ = Text2VideoRequest(prompt="a cat on a skateboard")


@pytest.fixture
def ops(clock):
    return Operations(
        base_url="https://kling.test",
        timeout=5.0,
        retry=RetryPolicy(attempts=4, base=0.5, cap=8.0),
        clock=clock,
        rng=random.Random(3),
    )


def ok(data):
    return answer(200, envelope(data))


def err(status, code, message="x", headers=None):
    return answer(status, envelope(code=code, message=message), headers=headers)


def echo_created(request: httpx.Request) -> httpx.Response:
    """Kling's create answer, echoing the external id the request carried."""
    body = json.loads(request.content)
    data = task("111", task_info={"external_task_id": body["external_task_id"]})
    return httpx.Response(200, json=envelope(data), request=request)


# -- get / list -------------------------------------------------------------------


def test_get_retries_5xx_then_succeeds(ops, clock):
    """Two server errors then an answer: three GETs, two backoff sleeps."""
    answers = [err(500, 5000), answer(502, text="<html>bad gateway</html>"), ok(task())]
    result, sent = drive(ops.get(PATH, "866889456698785798"), answers, clock)
    assert result.task_id == "866889456698785798"
    assert len(sent) == 3
    assert len(clock.slept) == 2
    assert all(0 <= s <= 8.0 for s in clock.slept)


def test_get_retries_transport_errors(ops, clock):
    """Timeouts and resets are retried on queries."""
    answers = [httpx.ReadTimeout("slow"), httpx.ConnectError("refused"), ok(task())]
    _, sent = drive(ops.get(PATH, "1"), answers, clock)
    assert len(sent) == 3


def test_get_honours_retry_after(ops, clock):
    """A 429/1302 with Retry-After waits at least that long."""
    answers = [err(429, 1302, headers={"Retry-After": "5"}), ok(task())]
    drive(ops.get(PATH, "1"), answers, clock)
    assert clock.slept[0] >= 5.0


def test_get_gives_up_after_attempts(ops, clock):
    """After RetryPolicy.attempts tries the last error is raised."""
    sent: list = []
    with pytest.raises(ServerError):
        drive(ops.get(PATH, "1"), [err(503, 5001)] * 4, clock, sent)
    assert len(sent) == 4


def test_get_gives_up_on_transport(ops, clock):
    """Repeated network failures end as our TransportError, chained."""
    with pytest.raises(TransportError) as info:
        drive(ops.get(PATH, "1"), [httpx.ReadTimeout("slow")] * 4, clock)
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (401, 1002, AuthError),
        (400, 1201, InvalidRequestError),
        (404, 1203, TaskNotFoundError),
    ],
)
def test_get_does_not_retry_client_errors(ops, clock, status, code, cls):
    """Auth, parameter and not-found errors are raised at once."""
    sent: list = []
    with pytest.raises(cls):
        drive(ops.get(PATH, "1"), [err(status, code)], clock, sent)
    assert len(sent) == 1


def test_get_404_envelope_is_not_found(ops, clock):
    """A 404 in Kling's envelope for a single task is TaskNotFoundError."""
    with pytest.raises(TaskNotFoundError):
        drive(ops.get(PATH, "1"), [err(404, 1202)], clock)


def test_get_by_external_single_or_list(ops, clock):
    """By external id: a single object, or a list filtered to the matching task."""
    one, sent = drive(
        ops.get(PATH, external_task_id="km-a"),
        [ok(task("9", task_info={"external_task_id": "km-a"}))],
        clock,
    )
    assert one.task_id == "9"
    assert sent[0].url.params["external_task_id"] == "km-a"
    listed = [
        task("1", task_info={"external_task_id": "km-x"}),
        task("2", task_info={"external_task_id": "km-a"}),
    ]
    found, _ = drive(ops.get(PATH, external_task_id="km-a"), [ok(listed)], clock)
    assert found.task_id == "2"


def test_get_by_external_falls_back_to_path(ops, clock):
    """A list without the task (filter ignored) is followed by GET <path>/<ext id>."""
    answers = [ok([task("1")]), ok(task("5", task_info={"external_task_id": "km-a"}))]
    found, sent = drive(ops.get(PATH, external_task_id="km-a"), answers, clock)
    assert found.task_id == "5"
    assert sent[1].url.path == f"{PATH}/km-a"
    with pytest.raises(TaskNotFoundError):
        drive(
            ops.get(PATH, external_task_id="km-a"),
            [ok([]), err(404, 1203)],
            clock,
        )


def test_list_parses_page(ops, clock):
    """A list page returns its tasks and sends pageNum/pageSize."""
    tasks, sent = drive(ops.list(PATH, 2, 500), [ok([task("1"), task("2")])], clock)
    assert [t.task_id for t in tasks] == ["1", "2"]
    assert sent[0].url.params["pageNum"] == "2"
    assert sent[0].url.params["pageSize"] == "500"


# -- create -----------------------------------------------------------------------


def test_create_mints_external_id_and_callback(ops, clock):
    """Create sends a minted km- id and the callback URL."""
    created, sent = drive(
        ops.create(REQ, external_task_id=None, callback_url="https://cb/x"),
        [echo_created],
        clock,
    )
    body = json.loads(sent[0].content)
    assert body["external_task_id"].startswith("km-")
    assert body["callback_url"] == "https://cb/x"
    assert created.external_task_id == body["external_task_id"]


def test_create_keeps_given_external_id(ops, clock):
    """A caller's external id is used as is."""
    created, _ = drive(
        ops.create(REQ, external_task_id="mine-1", callback_url=None),
        [echo_created],
        clock,
    )
    assert created.external_task_id == "mine-1"


def test_create_drop_resolved_by_lookup(ops, clock):
    """A dropped answer is resolved by GET by external id: no second POST."""
    found = ok(task("111", "processing", task_info={"external_task_id": "e-1"}))
    answers = [httpx.RemoteProtocolError("dropped"), found]
    created, sent = drive(
        ops.create(REQ, external_task_id="e-1", callback_url=None), answers, clock
    )
    assert created.task_id == "111"
    assert [r.method for r in sent] == ["POST", "GET"]


def test_create_timeout_not_found_reposts_same_id(ops, clock):
    """Not found after an ambiguous failure: POST again with the same external id."""
    answers = [httpx.ReadTimeout("slow"), err(404, 1203), echo_created]
    created, sent = drive(
        ops.create(REQ, external_task_id="e-2", callback_url=None), answers, clock
    )
    assert [r.method for r in sent] == ["POST", "GET", "POST"]
    assert json.loads(sent[2].content)["external_task_id"] == "e-2"
    assert created.external_task_id == "e-2"


@pytest.mark.parametrize(
    "first",
    [
        answer(200, text="<html>oops</html>"),
        answer(502, text="<html>bad gateway</html>"),
        answer(200, envelope({"nothing": True})),
    ],
)
def test_create_malformed_answers_are_ambiguous(ops, clock, first):
    """Non-JSON 2xx, non-envelope 5xx and task-less 2xx are looked up, not re-POSTed."""
    found = ok(task("7", task_info={"external_task_id": "e-3"}))
    created, sent = drive(
        ops.create(REQ, external_task_id="e-3", callback_url=None),
        [first, found],
        clock,
    )
    assert created.task_id == "7"
    assert [r.method for r in sent] == ["POST", "GET"]


def test_create_connect_error_reposts_without_lookup(ops, clock):
    """A failure to connect sent nothing: POST again directly."""
    answers = [httpx.ConnectError("refused"), echo_created]
    _, sent = drive(
        ops.create(REQ, external_task_id="e-4", callback_url=None), answers, clock
    )
    assert [r.method for r in sent] == ["POST", "POST"]


def test_create_kling_5000_reposts_after_backoff(ops, clock):
    """A 5000 envelope means not created: POST again with the same id after backoff."""
    answers = [err(500, 5000), err(503, 5001), echo_created]
    _, sent = drive(
        ops.create(REQ, external_task_id="e-5", callback_url=None), answers, clock
    )
    assert [r.method for r in sent] == ["POST", "POST", "POST"]
    assert len(clock.slept) == 2


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (429, 1303, ConcurrencyLimitError),
        (429, 1302, RateLimitError),
        (400, 1301, PolicyError),
        (400, 1201, InvalidRequestError),
        (429, 1102, Exception),
    ],
)
def test_create_kling_errors_raised_without_repost(ops, clock, status, code, cls):
    """Clear refusals (1303, 1302, 1301, 1201, 1102) raise at once, one POST."""
    sent: list = []
    with pytest.raises(cls):
        drive(
            ops.create(REQ, external_task_id="e-6", callback_url=None),
            [err(status, code)],
            clock,
            sent,
        )
    assert len(sent) == 1


def test_create_bounded(ops, clock):
    """Ambiguity that never resolves stops after RetryPolicy.attempts POSTs."""
    answers = []
    for _ in range(4):
        answers += [httpx.ReadTimeout("slow"), err(404, 1203)]
    sent: list = []
    with pytest.raises(TransportError):
        drive(
            ops.create(REQ, external_task_id="e-7", callback_url=None),
            answers,
            clock,
            sent,
        )
    assert [r.method for r in sent].count("POST") == 4


def test_create_duplicate_after_lookup_looks_again(ops, clock):
    """A duplicate-id refusal after a miss means the task exists: look it up again."""
    found = ok(task("8", task_info={"external_task_id": "e-8"}))
    answers = [
        httpx.ReadTimeout("slow"),
        err(404, 1203),
        err(400, 1201, "duplicate"),
        found,
    ]
    created, sent = drive(
        ops.create(REQ, external_task_id="e-8", callback_url=None), answers, clock
    )
    assert created.task_id == "8"
    assert [r.method for r in sent] == ["POST", "GET", "POST", "GET"]


# -- wait -------------------------------------------------------------------------


def _wait(ops, timeout=600.0, **kw):
    return ops.wait(
        PATH,
        task_id=kw.get("task_id", "1"),
        external_task_id=None,
        known=kw.get("known"),
        timeout=timeout,
        poll_interval=2.0,
        max_interval=30.0,
    )


def test_wait_returns_on_succeed(ops, clock):
    """Wait polls through submitted and processing and returns the succeeded task."""
    answers = [
        ok(task(status="submitted")),
        ok(task(status="processing")),
        ok(task(status="succeed")),
    ]
    result, sent = drive(_wait(ops), answers, clock)
    assert result.task_status == "succeed"
    assert len(sent) == 3
    assert clock.slept[1] > clock.slept[0] * 1.1 or clock.slept[1] >= 2.0


def test_wait_raises_task_failed(ops, clock):
    """A failed task raises TaskFailedError carrying the task."""
    answers = [ok(task(status="failed", task_status_msg="Image pixel is invalid"))]
    with pytest.raises(TaskFailedError) as info:
        drive(_wait(ops), answers, clock)
    assert info.value.task.task_status_msg == "Image pixel is invalid"


def test_wait_survives_transient_errors(ops, clock):
    """Network and 5xx failures during a wait are retried, then polling goes on."""
    answers = [httpx.ReadTimeout("t")] * 4 + [
        err(500, 5000),
        ok(task(status="succeed")),
    ]
    result, sent = drive(_wait(ops), answers, clock)
    assert result.task_status == "succeed"
    assert len(sent) == 6


def test_wait_timeout_carries_last_task(ops, clock):
    """Past the deadline (injected clock) WaitTimeoutError carries the last task."""
    start = clock.now()
    answers = [ok(task(status="processing"))] * 200
    with pytest.raises(WaitTimeoutError) as info:
        drive(_wait(ops, timeout=120.0), answers, clock)
    assert info.value.last is not None
    assert info.value.last.task_status == "processing"
    assert clock.now() - start == pytest.approx(120.0)
    assert max(clock.slept) <= 30.0


def test_wait_raises_auth_errors(ops, clock):
    """A non-transient error ends the wait."""
    with pytest.raises(AuthError):
        drive(_wait(ops), [err(401, 1002)], clock)


def test_wait_schema_drift(ops, clock):
    """An undocumented status seen three times in a row raises SchemaDriftError."""
    answers = [ok(task(status="queued_v2"))] * 3
    with pytest.raises(SchemaDriftError):
        drive(_wait(ops), answers, clock)


def test_wait_known_terminal_task_needs_no_poll(ops, clock):
    """A Task object already terminal is returned without a request."""
    done = Task.model_validate(task(status="succeed"))
    result, sent = drive(_wait(ops, known=done), [], clock)
    assert result is done
    assert sent == []


def test_wait_survives_garbled_2xx(ops, clock):
    """A 2xx that is not JSON is asked again, like any garbled query answer."""
    answers = [answer(200, text="nope"), ok(task(status="succeed"))]
    _, sent = drive(_wait(ops), answers, clock)
    assert len(sent) == 2


def test_get_garbled_4xx_not_retried(ops, clock):
    """A non-envelope 4xx (a proxy refusing us) is raised at once."""
    sent: list = []
    with pytest.raises(UnexpectedResponseError):
        drive(ops.get(PATH, "1"), [answer(403, text="Forbidden")], clock, sent)
    assert len(sent) == 1


def test_create_unresolved_names_external_id(ops, clock):
    """When the lookup fails too, the error says the outcome is unknown and the id."""
    answers = [httpx.ReadTimeout("slow")] + [err(503, 5001)] * 4
    with pytest.raises(TransportError) as info:
        drive(
            ops.create(REQ, external_task_id="e-9", callback_url=None), answers, clock
        )
    assert "e-9" in str(info.value)
    assert "unknown" in str(info.value)
