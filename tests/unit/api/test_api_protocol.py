"""Parsing Kling's real answers and building requests, without sockets."""

from __future__ import annotations

import httpx
import pytest

from klingmon.api import _protocol as proto
from klingmon.api import resolve_endpoint
from klingmon.domain import TaskStatus
from klingmon.errors import (
    AccountError,
    ApiError,
    AuthError,
    ConcurrencyLimitError,
    InvalidRequestError,
    PolicyError,
    RateLimitError,
    RequestValidationError,
    ServerError,
    TaskNotFoundError,
    UnexpectedResponseError,
)

NOW = 1_750_000_000.0

# Reference §6, verbatim.
CREATE = (
    '{"code":0,"message":"SUCCEED","request_id":"c0656403-1e6e-4b7e-b8f8-2cdd2595f2b9",'
    '"data":{"task_id":"867283741759111202","task_status":"submitted",'
    '"task_info":{"external_task_id":"text2video_kling_v3_final-1774805076"},'
    '"created_at":1774805076166,"updated_at":1774805076166}}'
)
SUCCEED = (
    '{"code":0,"message":"SUCCEED","request_id":"CjnVU2evHRAAAAAAAKDHAg","data":'
    '{"task_id":"CjI17WevH1IAAAAAAHmgsw","task_status":"succeed","task_status_msg":"",'
    '"task_result":{"videos":[{"id":"28444a6c-b923-4d7c-be2c-e0898ea73dc0",'
    '"url":"https://cdn.klingai.com/bs2/upload-kling-api/5739745938/image2video/'
    'CjI17WevH1IAAAAAAHmgsw-0_raw_video_1.mp4","duration":"5.1"}]},'
    '"created_at":1739744384259,"updated_at":1739744621359}}'
)
FAILED = (
    '{"code":0,"data":{"task_id":"833446756*******","task_info":{},'
    '"created_at":1766737710125,"updated_at":1766737711775,"task_result":{},'
    '"task_status":"failed","task_status_msg":"Image pixel is invalid"},'
    '"message":"SUCCEED","request_id":"ace7625a-0000"}'
)
SPRING_404 = (
    '{"timestamp":"2025-06-14T08:13:14.778+0000","status":404,"error":"Not Found",'
    '"message":"No message available","path":"/v1/task/list"}'
)
HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def _response(status: int, text: str, headers: dict[str, str] | None = None):
    return httpx.Response(status, text=text, headers=headers)


def _task(text: str, status: int = 200):
    response = _response(status, text)
    return proto.task_from(proto.read_envelope(response, NOW), status)


def test_real_create_body():
    """The 2026 create answer parses into a submitted task with its external id."""
    task = _task(CREATE)
    assert task.task_id == "867283741759111202"
    assert task.status is TaskStatus.SUBMITTED
    assert task.external_task_id == "text2video_kling_v3_final-1774805076"
    assert task.created_at == task.updated_at == 1774805076166


def test_real_succeed_body():
    """The 2025 succeed answer (base64-like id, no task_info) carries its video."""
    task = _task(SUCCEED)
    assert task.task_id == "CjI17WevH1IAAAAAAHmgsw"
    assert task.status is TaskStatus.SUCCEED
    assert task.urls[0].endswith("-0_raw_video_1.mp4")
    assert task.task_result.videos[0].duration == "5.1"
    assert task.external_task_id is None


def test_real_failed_body_is_a_task_not_an_error():
    """A failed task arrives with code 0 and parses as a failed Task."""
    task = _task(FAILED)
    assert task.status is TaskStatus.FAILED
    assert task.task_status_msg == "Image pixel is invalid"
    assert task.task_result.videos == []


def test_unknown_fields_tolerated():
    """Fields Kling adds later do not break parsing."""
    body = (
        '{"code":0,"message":"SUCCEED","request_id":"r","new_top":1,"data":'
        '{"task_id":12345,"task_status":"processing","final_unit_deduction":"5",'
        '"brand_new":{"x":1}}}'
    )
    task = _task(body)
    assert task.task_id == "12345"
    assert task.final_unit_deduction == "5"


def test_spring_404_names_the_route():
    """A Spring-style 404 means the route is wrong: an InvalidRequestError naming it."""
    with pytest.raises(InvalidRequestError) as info:
        proto.read_envelope(_response(404, SPRING_404), NOW)
    assert not isinstance(info.value, TaskNotFoundError)
    assert "/v1/task/list" in str(info.value)
    assert info.value.status_code == 404


def test_html_502_is_unexpected_response():
    """An HTML gateway page is an UnexpectedResponseError with a short excerpt."""
    with pytest.raises(UnexpectedResponseError) as info:
        proto.read_envelope(_response(502, HTML_502), NOW)
    error = info.value
    assert error.status_code == 502
    assert error.is_server_side
    assert "502 Bad Gateway" in str(error)
    assert "\n" not in str(error)
    assert len(error.kling_message) < 200


@pytest.mark.parametrize("text", ["", "ok", "[1, 2]", '{"foo": 1}', '{"code": "0"}'])
def test_non_envelope_bodies(text):
    """Empty, plain text and non-envelope JSON raise UnexpectedResponseError."""
    with pytest.raises(UnexpectedResponseError):
        proto.read_envelope(_response(200, text), NOW)


def test_excerpt_redacts_tokens():
    """A body echoing a bearer token or a JWT never reaches an error message."""
    body = "bad header Bearer abc.def.ghi and eyJhbGciOi.eyJpc3Mi.sig end"
    with pytest.raises(UnexpectedResponseError) as info:
        proto.read_envelope(_response(500, body), NOW)
    assert "abc.def" not in str(info.value)
    assert "eyJhbGciOi" not in str(info.value)


def test_envelope_without_task_is_unexpected():
    """A 2xx envelope whose data is not a task raises UnexpectedResponseError."""
    for data in ('"x"', "null", '{"task_status":"submitted"}'):
        text = f'{{"code":0,"message":"SUCCEED","request_id":"r","data":{data}}}'
        with pytest.raises(UnexpectedResponseError):
            _task(text)


def test_list_body():
    """A list answer is a list of tasks; an empty or missing data is an empty list."""
    one = '{"task_id":"1","task_status":"submitted"}'
    two = '{"task_id":"2","task_status":"succeed"}'
    text = f'{{"code":0,"message":"SUCCEED","request_id":"r","data":[{one},{two}]}}'
    response = _response(200, text)
    tasks = proto.tasks_from(proto.read_envelope(response, NOW), 200)
    assert [t.task_id for t in tasks] == ["1", "2"]
    empty = _response(200, '{"code":0,"message":"SUCCEED","data":[]}')
    assert proto.tasks_from(proto.read_envelope(empty, NOW), 200) == []


def test_list_body_only_validates_what_the_filter_keeps():
    """``only`` sees raw items: a refused one is not validated, a kept bad one is."""
    good = '{"task_id":"1","task_status":"submitted","novel":{"x":1}}'
    broken = '{"task_id":"2"}'  # no task_status: invalid if anyone validated it
    text = f'{{"code":0,"message":"SUCCEED","data":[{good},{broken},"odd"]}}'
    envelope = proto.read_envelope(_response(200, text), NOW)
    seen: list[object] = []

    def first_only(item: object) -> bool:
        seen.append(item)
        return isinstance(item, dict) and item.get("task_id") == "1"

    with pytest.raises(UnexpectedResponseError):  # a non-object is never skipped
        proto.tasks_from(envelope, 200, first_only)
    assert [item["task_id"] for item in seen] == ["1", "2"]  # type: ignore[index]
    text = f'{{"code":0,"message":"SUCCEED","data":[{good},{broken}]}}'
    envelope = proto.read_envelope(_response(200, text), NOW)
    [task] = proto.tasks_from(envelope, 200, first_only)
    assert task.task_id == "1"
    with pytest.raises(UnexpectedResponseError):
        proto.tasks_from(envelope, 200, lambda _item: True)


CODES = {
    **dict.fromkeys([1000, 1001, 1002, 1003, 1004], (401, AuthError)),
    **dict.fromkeys([1100, 1101, 1102], (429, AccountError)),
    1103: (403, AccountError),
    1200: (400, InvalidRequestError),
    1201: (400, InvalidRequestError),
    1202: (404, InvalidRequestError),
    1203: (404, TaskNotFoundError),
    1300: (400, PolicyError),
    1301: (400, PolicyError),
    1302: (429, RateLimitError),
    1303: (429, ConcurrencyLimitError),
    1304: (429, PolicyError),
    5000: (500, ServerError),
    5001: (503, ServerError),
    5002: (504, ServerError),
}


@pytest.mark.parametrize(("code", "expected"), sorted(CODES.items()))
def test_every_error_code(code, expected):
    """Each documented code maps to its class with status, code, message, request id."""
    status, cls = expected
    text = f'{{"code":{code},"message":"msg {code}","request_id":"rid-{code}"}}'
    with pytest.raises(ApiError) as info:
        proto.read_envelope(_response(status, text, {"Retry-After": "7"}), NOW)
    error = info.value
    assert type(error) is cls
    assert (error.status_code, error.code) == (status, code)
    assert error.kling_message == f"msg {code}"
    assert error.request_id == f"rid-{code}"
    assert error.retry_after == 7.0


def test_error_code_with_http_200():
    """A non-zero code is an error even when HTTP says 200."""
    with pytest.raises(ConcurrencyLimitError):
        proto.read_envelope(_response(200, '{"code":1303,"message":"full"}'), NOW)


def test_retry_after_http_date():
    """A Retry-After given as an HTTP date becomes seconds from now."""
    text = '{"code":1302,"message":"too fast"}'
    headers = {"Retry-After": "Sun, 15 Jun 2025 15:06:55 GMT"}
    with pytest.raises(RateLimitError) as info:
        proto.read_envelope(_response(429, text, headers), NOW)
    assert info.value.retry_after == pytest.approx(15.0)


def test_resolve_endpoint():
    """Short names and /v1/ paths resolve to legacy paths."""
    assert resolve_endpoint("text2video") == "/v1/videos/text2video"
    assert resolve_endpoint("lip-sync") == "/v1/videos/lip-sync"
    assert resolve_endpoint("/v1/images/generations/") == "/v1/images/generations"


@pytest.mark.parametrize(("page", "size"), [(0, 30), (1001, 30), (1, 0), (1, 501)])
def test_list_ranges_validated(page, size):
    """pageNum 1..1000 and pageSize 1..500 are checked before sending."""
    with pytest.raises(RequestValidationError):
        proto.build_list("https://x", "/v1/videos/text2video", page, size, 5.0)


def test_built_requests():
    """Requests carry the right method, path, query and timeout."""
    get = proto.build_get("https://h/base/", "/v1/videos/text2video", "a/b", 5.0)
    assert str(get.url) == "https://h/base/v1/videos/text2video/a%2Fb"
    assert get.extensions["timeout"]["read"] == 5.0
    by_ext = proto.build_get_by_external("https://h", "/v1/videos/x", "km-1", 5.0)
    assert by_ext.url.params["external_task_id"] == "km-1"
    page = proto.build_list("https://h", "/v1/videos/x", 2, 500, 5.0)
    assert proto.request_kind(page) == "list"
    assert proto.request_kind(by_ext) == "get"
    post = proto.build_create("https://h", "/v1/videos/x", {"prompt": "p"}, 5.0)
    assert proto.request_kind(post) == "create"
    assert post.read() == b'{"prompt":"p"}'


def test_minted_external_ids():
    """Minted external ids are km- plus 12 hex digits, and unique."""
    ids = {proto.mint_external_task_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(len(i) == 15 and i.startswith("km-") for i in ids)
