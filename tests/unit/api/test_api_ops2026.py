"""New-generation operations driven by scripted answers (sans-I/O, no sockets).

Batched ``GET /tasks`` (unknown ids missing, a refused long batch shrunk),
``POST /tasks`` paging by cursor, creates on ``/<family>/<model>`` paths and their
ambiguity resolved by ``external_task_ids``.
"""

from __future__ import annotations

import json
import random

import httpx
import pytest
from kling_fakes import answer, drive, envelope

from klingmon.api import RetryPolicy, Task2026, build_request
from klingmon.api._ops import Operations
from klingmon.domain import TaskStatus
from klingmon.errors import (
    InvalidRequestError,
    TaskFailedError,
    TaskNotFoundError,
    TransportError,
)

PATH = "/text-to-video/kling-3.0"


@pytest.fixture
def ops(clock):
    return Operations(
        base_url="https://kling.test",
        timeout=5.0,
        retry=RetryPolicy(attempts=4, base=0.5, cap=8.0),
        clock=clock,
        rng=random.Random(3),
        tasks_batch_size=4,
    )


def new_task(task_id: str, status: str = "processing", **extra) -> dict:
    return {
        "id": task_id,
        "status": status,
        "message": "",
        "create_time": 1790605869865,
        "update_time": 1790605869865,
        **extra,
    }


def tasks_known(known: dict[str, dict]):
    """GET /tasks as Kling answers it: the known ids, unknown ones missing."""

    def make(request: httpx.Request) -> httpx.Response:
        ids = request.url.params["task_ids"].split(",")
        data = [known[i] for i in ids if i in known]
        return httpx.Response(200, json=envelope(data), request=request)

    return make


def refuse_longer_than(limit: int, known: dict[str, dict]):
    def make(request: httpx.Request) -> httpx.Response:
        ids = request.url.params["task_ids"].split(",")
        if len(ids) > limit:
            body = envelope(code=1201, message="task_ids too long")
            return httpx.Response(400, json=body, request=request)
        return tasks_known(known)(request)

    return make


def test_get_tasks_batches_and_skips_unknown_ids(ops, clock):
    """Ten ids go in batches of four; unknown ones are simply missing."""
    known = {str(i): new_task(str(i)) for i in range(10) if i % 3}
    value, sent = drive(
        ops.tasks2026.get_tasks([str(i) for i in range(10)]),
        [tasks_known(known)] * 3,
        clock,
    )
    assert [t.id for t in value] == sorted(known, key=int)
    assert [len(r.url.params["task_ids"].split(",")) for r in sent] == [4, 4, 2]
    assert all(r.method == "GET" and r.url.path == "/tasks" for r in sent)


def test_get_tasks_unknown_only_is_an_empty_answer(ops, clock):
    """An answer of ``data: []`` is no error."""
    value, _ = drive(
        ops.tasks2026.get_tasks(["nope"]), [answer(200, envelope([]))], clock
    )
    assert value == []


def test_a_refused_long_batch_shrinks_and_stays_shrunk(ops, clock):
    """A 400 on a long batch halves it; the smaller size is kept afterwards."""
    known = {str(i): new_task(str(i)) for i in range(6)}
    refuse = refuse_longer_than(2, known)
    value, sent = drive(ops.tasks2026.get_tasks(list(known)), [refuse] * 5, clock)
    assert [t.id for t in value] == list(known)
    sizes = [len(r.url.params["task_ids"].split(",")) for r in sent]
    assert sizes == [4, 2, 2, 2]
    assert ops.tasks2026.batch_size == 2
    _, sent = drive(ops.tasks2026.get_tasks(["0", "1", "2"]), [refuse] * 2, clock)
    assert [len(r.url.params["task_ids"].split(",")) for r in sent] == [2, 1]


def test_a_refused_single_id_is_raised(ops, clock):
    """A 400 for one id is no "too long": it is raised, loudly."""
    bad = answer(400, envelope(code=1201, message="task_ids is invalid"))
    with pytest.raises(InvalidRequestError):
        drive(ops.tasks2026.get_tasks(["x"]), [bad], clock)


def test_get_tasks_by_external_ids(ops, clock):
    """external=True asks ``external_task_ids=``."""
    data = [new_task("1", external_id="km-a")]
    value, sent = drive(
        ops.tasks2026.get_tasks(["km-a", "km-b"], external=True),
        [answer(200, envelope(data))],
        clock,
    )
    assert sent[0].url.params["external_task_ids"] == "km-a,km-b"
    assert [t.external_id for t in value] == ["km-a"]


def test_get_on_a_new_path_is_one_batch_and_missing_is_not_found(ops, clock):
    """get() on a new path asks GET /tasks; a missing task is TaskNotFoundError."""
    known = {"7": new_task("7")}
    value, _ = drive(ops.get(PATH, "7"), [tasks_known(known)], clock)
    assert isinstance(value, Task2026)
    with pytest.raises(TaskNotFoundError):
        drive(ops.get(PATH, "8"), [tasks_known(known)], clock)


def test_query_all_pages_by_cursor(ops, clock):
    """POST /tasks pages follow next_cursor until has_more is false."""
    pages = [
        {"result": [new_task("1")], "count": 1, "next_cursor": "c1", "has_more": True},
        {"result": [new_task("2")], "count": 1, "next_cursor": "c2", "has_more": True},
        {"count": 0, "has_more": False},
    ]
    value, sent = drive(
        ops.tasks2026.query_all(
            statuses=["submitted", "processing"], since_ms=1, until_ms=2
        ),
        [answer(200, envelope(p)) for p in pages],
        clock,
    )
    assert [t.id for t in value] == ["1", "2"]
    bodies = [json.loads(r.content) for r in sent]
    assert bodies[0] == {
        "limit": 500,
        "start_time": "1",
        "end_time": "2",
        "filters": [{"key": "status", "values": ["submitted", "processing"]}],
    }
    assert [b.get("cursor") for b in bodies] == [None, "c1", "c2"]
    assert all(r.method == "POST" and r.url.path == "/tasks" for r in sent)


def test_query_tasks_filters_product_type(ops, clock):
    """A product_type filter is sent beside the status one."""
    _, sent = drive(
        ops.tasks2026.query_tasks(product_types=["image"], limit=10),
        [answer(200, envelope({"count": 0, "has_more": False}))],
        clock,
    )
    assert json.loads(sent[0].content) == {
        "limit": 10,
        "filters": [{"key": "product_type", "values": ["image"]}],
    }


def test_create_on_a_new_path_puts_ids_in_options(ops, clock):
    """A create on /text-to-video/kling-3.0 answers a Task2026."""

    def created(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        assert "external_task_id" not in body
        assert body["options"]["callback_url"] == "https://me/cb"
        assert body["settings"] == {"duration": 10}
        return httpx.Response(200, json=envelope(new_task("9", "submitted")))

    request = build_request(PATH, {"prompt": "p", "duration": "10"})
    value, sent = drive(
        ops.create(request, external_task_id="km-1", callback_url="https://me/cb"),
        [created],
        clock,
    )
    assert isinstance(value, Task2026)
    assert value.status is TaskStatus.SUBMITTED
    assert json.loads(sent[0].content)["options"]["external_task_id"] == "km-1"


def test_an_ambiguous_new_create_is_found_by_external_task_ids(ops, clock):
    """A create lost in transit is looked up by external_task_ids, not resent."""
    request = build_request(PATH, {"prompt": "p"})
    lookup = answer(200, envelope([new_task("9", external_id="km-1")]))
    value, sent = drive(
        ops.create(request, external_task_id="km-1", callback_url=None),
        [httpx.ReadTimeout("lost"), lookup],
        clock,
    )
    assert value.id == "9"
    assert [r.method for r in sent] == ["POST", "GET"]
    assert sent[1].url.params["external_task_ids"] == "km-1"


def test_an_ambiguous_new_create_not_found_is_sent_again(ops, clock):
    """When the lookup finds nothing, the create is sent once more."""
    request = build_request(PATH, {"prompt": "p"})
    value, sent = drive(
        ops.create(request, external_task_id="km-1", callback_url=None),
        [
            httpx.ReadTimeout("lost"),
            answer(200, envelope([])),
            answer(200, envelope(new_task("9", "submitted"))),
        ],
        clock,
    )
    assert value.id == "9"
    assert [r.method for r in sent] == ["POST", "GET", "POST"]


def test_an_ambiguous_create_whose_lookup_fails_too_is_a_transport_error(ops, clock):
    """Neither the create nor the lookup answered: the outcome stays unknown."""
    request = build_request(PATH, {"prompt": "p"})
    with pytest.raises(TransportError, match="outcome unknown"):
        drive(
            ops.create(request, external_task_id="km-1", callback_url=None),
            [httpx.ReadTimeout("lost")] + [httpx.ConnectError("down")] * 4,
            clock,
        )


def test_wait_on_a_new_path_ends_on_succeeded_or_failed(ops, clock):
    """wait() polls GET /tasks until ``succeeded``; ``failed`` raises."""
    answers = [
        answer(200, envelope([new_task("5", "processing")])),
        answer(200, envelope([new_task("5", "succeeded")])),
    ]
    value, _ = drive(
        ops.wait(
            PATH,
            task_id="5",
            external_task_id=None,
            known=None,
            timeout=600,
            poll_interval=1,
            max_interval=5,
        ),
        answers,
        clock,
    )
    assert value.status is TaskStatus.SUCCEED
    with pytest.raises(TaskFailedError):
        drive(
            ops.wait(
                PATH,
                task_id="5",
                external_task_id=None,
                known=None,
                timeout=600,
                poll_interval=1,
                max_interval=5,
            ),
            [answer(200, envelope([new_task("5", "failed", message="moderation")]))],
            clock,
        )
