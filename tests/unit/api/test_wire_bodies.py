"""Every body in the two reference notes parses, and maps onto the domain.

The bodies are copied from ``reference/kling-api.md`` (legacy) and
``reference/kling-api-2026.md`` (new generation); pure parsing, no sockets.
"""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from klingmon.api import (
    AccountCosts,
    Task,
    Task2026,
    parse_task,
    snapshot_of,
)
from klingmon.api import _protocol as proto
from klingmon.api import _protocol2026 as proto26
from klingmon.domain import RESULT_KINDS, Cost, TaskStatus
from klingmon.errors import (
    ApiError,
    AuthError,
    ConcurrencyLimitError,
    InvalidRequestError,
)


def _envelope(body: dict, status: int = 200):
    response = httpx.Response(status, content=json.dumps(body).encode())
    return proto.read_envelope(response, 0.0), status


# -- legacy (kling-api.md §6, §7) ---------------------------------------------------

LEGACY_CREATE = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "c0656403-1e6e-4b7e-b8f8-2cdd2595f2b9",
    "data": {
        "task_id": "867283741759111202",
        "task_status": "submitted",
        "task_info": {"external_task_id": "text2video_kling_v3_final-1774805076"},
        "created_at": 1774805076166,
        "updated_at": 1774805076166,
    },
}
LEGACY_SUCCEED = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "CjnVU2evHRAAAAAAAKDHAg",
    "data": {
        "task_id": "CjI17WevH1IAAAAAAHmgsw",
        "task_status": "succeed",
        "task_status_msg": "",
        "task_result": {
            "videos": [
                {
                    "id": "28444a6c-b923-4d7c-be2c-e0898ea73dc0",
                    "url": "https://cdn.klingai.com/bs2/upload-kling-api/5739745938/"
                    "image2video/CjI17WevH1IAAAAAAHmgsw-0_raw_video_1.mp4",
                    "duration": "5.1",
                }
            ]
        },
        "created_at": 1739744384259,
        "updated_at": 1739744621359,
    },
}
LEGACY_FAILED = {
    "code": 0,
    "data": {
        "task_id": "833446756*******",
        "task_info": {},
        "created_at": 1766737710125,
        "updated_at": 1766737711775,
        "task_result": {},
        "task_status": "failed",
        "task_status_msg": "Image pixel is invalid",
    },
    "message": "SUCCEED",
    "request_id": "ace7625a-…",
}
#: The callback schema of §7, placeholders as the docs print them.
LEGACY_CALLBACK = {
    "task_id": "string",
    "task_status": "string",
    "task_status_msg": "string",
    "created_at": 1722769557708,
    "updated_at": 1722769557708,
    "final_unit_deduction": "string",
    "final_balance_deduction": {"quota": "string", "list_price": "string"},
    "task_info": {
        "parent_video": {"id": "string", "url": "string", "duration": "string"},
        "external_task_id": "string",
    },
    "task_result": {
        "images": [{"index": 0, "url": "string"}],
        "videos": [{"id": "string", "url": "string", "duration": "string"}],
    },
}


def test_legacy_create_answer():
    """The 2026 create answer (kling-v3) parses; the external id is read."""
    envelope, status = _envelope(LEGACY_CREATE)
    snap = snapshot_of(proto.task_from(envelope, status))
    assert snap.task_id == "867283741759111202"
    assert snap.status is TaskStatus.SUBMITTED
    assert snap.external_task_id == "text2video_kling_v3_final-1774805076"
    assert snap.created_ms == 1774805076166
    assert (snap.result, snap.cost, snap.units) == (None, None, None)


def test_legacy_succeed_answer_without_task_info_or_units():
    """A 2025 succeed body (no task_info, no final_unit_deduction) keeps its video."""
    envelope, status = _envelope(LEGACY_SUCCEED)
    snap = snapshot_of(proto.task_from(envelope, status))
    assert snap.status is TaskStatus.SUCCEED
    assert snap.urls == [LEGACY_SUCCEED["data"]["task_result"]["videos"][0]["url"]]
    assert snap.result["videos"][0]["duration"] == "5.1"
    assert snap.cost is None


def test_legacy_failed_answer():
    """Failure is a code-0 envelope whose task says why."""
    envelope, status = _envelope(LEGACY_FAILED)
    snap = snapshot_of(proto.task_from(envelope, status))
    assert snap.status is TaskStatus.FAILED
    assert snap.message == "Image pixel is invalid"
    assert snap.result is None


def test_legacy_callback_schema():
    """The documented callback schema parses; an unknown status maps to None."""
    task = parse_task(LEGACY_CALLBACK)
    assert isinstance(task, Task)
    snap = snapshot_of(task)
    assert snap.status is None
    assert snap.raw_status == "string"
    assert snap.external_task_id == "string"
    assert task.task_info.parent_video.id == "string"
    assert [item["url"] for item in snap.result["images"]] == ["string"]
    # Placeholders are no amounts: no cost is made up from them.
    assert snap.cost is None


def test_legacy_costs_units_and_balance():
    """final_unit_deduction and final_balance_deduction make one cost record."""
    body = {
        **LEGACY_CALLBACK,
        "task_status": "succeed",
        "final_unit_deduction": "5",
        "final_balance_deduction": {"quota": "0.70", "list_price": "1.00"},
    }
    snap = snapshot_of(body)
    assert snap.cost == Cost(units=5.0, cash=0.7, list_price=1.0)
    assert snap.units == 5.0
    assert snapshot_of({**body, "final_balance_deduction": "0.5"}).cost.cash == 0.5


def test_legacy_audios_are_kept():
    """task_result.audios (mp3 and wav) land in the stored result as files."""
    body = {
        "task_id": 866889456698785798,
        "task_status": "succeed",
        "task_result": {
            "videos": [],
            "images": [],
            "audios": [
                {
                    "id": 42,
                    "url_mp3": "https://cdn/a.mp3",
                    "url_wav": "https://cdn/a.wav",
                    "duration_mp3": "3.2",
                    "duration_wav": "3.2",
                }
            ],
        },
    }
    snap = snapshot_of(body)
    assert snap.task_id == "866889456698785798"
    assert snap.urls == ["https://cdn/a.mp3", "https://cdn/a.wav"]
    assert snap.result["audios"][0] == {
        "id": "42",
        "url": "https://cdn/a.mp3",
        "format": "mp3",
        "duration": "3.2",
    }
    assert snap.wire["task_result"]["audios"][0]["url_wav"] == "https://cdn/a.wav"


def test_legacy_unknown_fields_kept_and_missing_fields_tolerated():
    """Extra fields survive into the wire copy; a bare id and status suffice."""
    snap = snapshot_of(
        {"task_id": "1", "task_status": "processing", "shiny": {"new": True}}
    )
    assert snap.status is TaskStatus.PROCESSING
    assert snap.wire["shiny"] == {"new": True}
    assert snap.message == ""


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            429,
            {
                "code": 1303,
                "message": "parallel task over resource pack limit",
                "request_id": "9984d27b-…",
            },
            ConcurrencyLimitError,
        ),
        (
            400,
            {
                "code": 1201,
                "message": "mode value 'professional' is invalid",
                "request_id": "24b6c764-…",
            },
            InvalidRequestError,
        ),
        (
            404,
            {
                "timestamp": "2025-06-14T08:13:14.778+0000",
                "status": 404,
                "error": "Not Found",
                "message": "No message available",
                "path": "/v1/task/list",
            },
            InvalidRequestError,
        ),
        (401, {"code": 1001, "message": "Authorization is empty"}, AuthError),
        (401, {"code": 1002, "message": "api key not found"}, AuthError),
        (
            400,
            {"code": 1201, "message": "task_ids or external_task_ids is required"},
            InvalidRequestError,
        ),
    ],
)
def test_error_bodies_of_both_notes_raise_their_class(status, body, error):
    """Each error body of either note raises its error class with Kling's code."""
    response = httpx.Response(status, content=json.dumps(body).encode())
    with pytest.raises(error) as info:
        proto.read_envelope(response, 0.0)
    if isinstance(info.value, ApiError) and "code" in body:
        assert info.value.code == body["code"]


# -- new generation (kling-api-2026.md) ----------------------------------------------

NEW_CREATE = {
    "code": 0,
    "message": "SUCCEED",
    "request_id": "…",
    "data": {
        "id": "933557073781063683",
        "status": "submitted",
        "message": "",
        "create_time": 1790605869865,
        "update_time": 1790605869865,
    },
}
TEST_CALLBACK = {
    "id": "913827032734642185",
    "status": "submitted",
    "outputs": [],
    "message": "",
    "create_time": 1785901861504,
    "update_time": 1785901861504,
}
VECTOR_BODY = {
    "id": "1234567890",
    "status": "succeeded",
    "message": "",
    "create_time": 1781080778802,
    "update_time": 1781080794151,
}
#: A task with every documented output type and billing item (field tables).
FULL_TASK = {
    "id": 933557073781063683,
    "status": "succeeded",
    "message": "",
    "create_time": 1790605869865,
    "update_time": 1790605969865,
    "external_id": "km-0123456789ab",
    "outputs": [
        {
            "type": "video",
            "id": 7001,
            "url": "https://v15-kling-fdl.klingai.com/v.mp4?Expires=1793197869",
            "watermark_url": "https://v15-kling-fdl.klingai.com/vw.mp4",
            "duration": "5.041",
        },
        {
            "type": "image",
            "url": "https://v15-kling-fdl.klingai.com/i.png",
            "watermark_url": "https://v15-kling-fdl.klingai.com/iw.png",
            "group_id": "g1",
        },
        {
            "type": "audio",
            "id": "a1",
            "mp3_url": "https://v15-kling-fdl.klingai.com/a.mp3",
            "wav_url": "https://v15-kling-fdl.klingai.com/a.wav",
            "mp3_duration": "5.0",
            "wav_duration": "5.0",
        },
        {
            "type": "voice",
            "id": "vo1",
            "name": "narrator",
            "url": "https://v15-kling-fdl.klingai.com/preview.mp3",
            "owned_by": "me",
            "status": "succeeded",
        },
        {
            "type": "element",
            "id": "el1",
            "name": "hero",
            "description": "a cat",
            "element_type": "character",
            "materials": [{"url": "https://v15-kling-fdl.klingai.com/m.png"}],
            "owned_by": "me",
            "status": "succeeded",
            "tags": ["cat"],
        },
    ],
    "billing": [
        {"charge_type": "unit", "amount": "3", "package_type": "video"},
        {
            "charge_type": "cash",
            "amount": "0.42",
            "cash_type": "balance",
            "currency": "USD",
            "list_price": "0.60",
        },
    ],
}


def test_new_create_answer_without_external_id():
    """The live create answer parses; external_id may be absent."""
    envelope, status = _envelope(NEW_CREATE)
    task = proto26.task2026_from(envelope, status)
    snap = snapshot_of(task)
    assert (snap.task_id, snap.status) == ("933557073781063683", TaskStatus.SUBMITTED)
    assert snap.external_task_id is None
    assert snap.created_ms == 1790605869865
    assert snap.result is None


@pytest.mark.parametrize("body", [TEST_CALLBACK, VECTOR_BODY])
def test_official_callback_bodies(body):
    """The test callback and the signature vector's body parse as new tasks."""
    task = parse_task(body)
    assert isinstance(task, Task2026)
    snap = snapshot_of(task)
    assert snap.task_id == body["id"]
    assert snap.raw_status == body["status"]
    assert snap.updated_ms == body["update_time"]
    assert snap.result is None
    assert snap.cost is None


def test_succeeded_is_succeed():
    """The new spelling ``succeeded`` is klingmon's SUCCEED."""
    assert snapshot_of(VECTOR_BODY).status is TaskStatus.SUCCEED


def test_every_output_type_and_billing():
    """video, image, audio (mp3 + wav), voice, element and billing all map."""
    snap = snapshot_of(FULL_TASK)
    assert snap.task_id == "933557073781063683"
    assert snap.external_task_id == "km-0123456789ab"
    assert set(snap.result) <= set(RESULT_KINDS)
    assert snap.result["videos"][0]["id"] == "7001"
    assert snap.result["videos"][0]["watermark_url"].endswith("vw.mp4")
    assert snap.result["images"][0]["group_id"] == "g1"
    assert [a["format"] for a in snap.result["audios"]] == ["mp3", "wav"]
    assert snap.result["voices"][0]["name"] == "narrator"
    assert snap.result["elements"][0]["references"][0]["url"].endswith("m.png")
    assert snap.urls == [
        FULL_TASK["outputs"][0]["url"],
        FULL_TASK["outputs"][1]["url"],
        FULL_TASK["outputs"][2]["mp3_url"],
        FULL_TASK["outputs"][2]["wav_url"],
        FULL_TASK["outputs"][3]["url"],
    ]
    assert snap.cost == Cost(
        units=3.0,
        cash=0.42,
        currency="USD",
        package_type="video",
        list_price=0.6,
        cash_type="balance",
    )
    assert snap.units == 3.0
    assert snap.wire["status"] == "succeeded"


def test_new_task_unknown_fields_and_types_are_kept():
    """An unknown field and an unknown output type survive; nothing is fetched."""
    body = {
        "id": "1",
        "status": "processing",
        "hologram": 1,
        "outputs": [{"type": "hologram", "url": "https://x/h"}],
    }
    snap = snapshot_of(body)
    assert snap.wire["hologram"] == 1
    assert snap.result == {"others": [{"type": "hologram", "url": "https://x/h"}]}
    assert snap.urls == []


@pytest.mark.parametrize(
    "body",
    [
        {"id": "1", "status": "queued_somewhere"},
        {"id": "1", "status": "succeed"},
        {"id": "1", "status": "failed", "message": None, "outputs": None},
        {"id": "1", "status": "submitted", "create_time": "1790605869865"},
        {"id": "1", "status": "processing", "billing": []},
    ],
)
def test_new_task_with_fields_missing_or_odd(body):
    """Missing outputs, null message, numeric strings, unknown statuses are fine."""
    snap = snapshot_of(body)
    assert snap.task_id == "1"
    assert snap.message == ""
    if body["status"] == "queued_somewhere":
        assert snap.status is None
    if "create_time" in body:
        assert snap.created_ms == 1790605869865


def test_new_task_without_id_is_an_error():
    """A task object without an id is refused (never guessed)."""
    envelope, status = _envelope({"code": 0, "data": {"status": "submitted"}})
    with pytest.raises(ApiError):
        proto26.task2026_from(envelope, status)


def test_get_tasks_answers():
    """GET /tasks: unknown ids answer an empty array; known ones are listed."""
    envelope, status = _envelope({"code": 0, "message": "SUCCEED", "data": []})
    assert proto26.tasks2026_from(envelope, status) == []
    envelope, status = _envelope({"code": 0, "data": [FULL_TASK, TEST_CALLBACK]})
    ids = [t.id for t in proto26.tasks2026_from(envelope, status)]
    assert ids == ["933557073781063683", "913827032734642185"]


def test_post_tasks_pages():
    """POST /tasks: a page with a cursor, and the live empty page without result."""
    envelope, status = _envelope(
        {
            "code": 0,
            "data": {
                "result": [TEST_CALLBACK],
                "count": 1,
                "next_cursor": "c2",
                "has_more": True,
            },
        }
    )
    page = proto26.page_from(envelope, status)
    assert ([t.id for t in page.result], page.next_cursor, page.has_more) == (
        ["913827032734642185"],
        "c2",
        True,
    )
    envelope, status = _envelope(
        {"code": 0, "message": "SUCCEED", "data": {"count": 0, "has_more": False}}
    )
    page = proto26.page_from(envelope, status)
    assert (page.result, page.next_cursor, page.has_more, page.count) == (
        [],
        None,
        False,
        0,
    )


def test_account_costs_with_and_without_packs():
    """/account/costs: a pack list, or (no packs) no list at all."""
    envelope, _ = _envelope(
        {"code": 0, "message": "SUCCEED", "data": {"code": 0, "msg": "success"}}
    )
    assert (
        AccountCosts.model_validate(envelope.data).resource_pack_subscribe_infos == []
    )
    costs = AccountCosts.model_validate(
        {
            "resource_pack_subscribe_infos": [
                {
                    "resource_pack_name": "Video B1",
                    "resource_pack_id": 99,
                    "resource_pack_type": "decreasing_total",
                    "total_quantity": 100,
                    "remaining_quantity": 97.0,
                    "purchase_time": 1790000000000,
                    "effective_time": 1790000000000,
                    "invalid_time": 1800000000000,
                    "status": "online",
                }
            ]
        }
    )
    pack = costs.resource_pack_subscribe_infos[0]
    assert (pack.resource_pack_id, pack.remaining_quantity, pack.status) == (
        "99",
        97.0,
        "online",
    )


# -- leniency, as properties ------------------------------------------------------

_ids = st.one_of(
    st.integers(min_value=0, max_value=2**63), st.text(min_size=1, max_size=20)
)
_extra = st.dictionaries(
    st.text(min_size=1, max_size=8).filter(
        lambda k: k not in Task2026.model_fields and k not in ("status", "task_id")
    ),
    st.one_of(st.none(), st.integers(), st.text(max_size=5), st.booleans()),
    max_size=4,
)


@given(task_id=_ids, status=st.text(max_size=12), extra=_extra)
def test_any_new_task_with_id_and_status_parses(task_id, status, extra):
    """Ids as numbers or strings, any status, unknown fields: parsed and kept."""
    snap = snapshot_of({"id": task_id, "status": status, **extra})
    assert snap.task_id == str(task_id)
    assert snap.raw_status == status
    assert snap.status is None or snap.status in TaskStatus
    for key, value in extra.items():
        assert snap.wire.get(key, value) == value


@given(task_id=_ids, status=st.sampled_from(["submitted", "processing", "succeed"]))
def test_any_legacy_task_with_id_and_status_parses(task_id, status):
    """The legacy adapter takes numeric ids too."""
    snap = snapshot_of({"task_id": task_id, "task_status": status})
    assert snap.task_id == str(task_id)
    assert snap.status == TaskStatus(status)
