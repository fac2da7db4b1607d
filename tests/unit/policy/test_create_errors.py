"""Create errors map to retry, requeue, reject or halt."""

from __future__ import annotations

import pytest

from klingmon.errors import (
    ApiError,
    ConfigError,
    RequestValidationError,
    StoreError,
    TransportError,
    UnexpectedResponseError,
    error_for_code,
)
from klingmon.policy import CreateAction, classify_create_error

A = CreateAction

#: Every documented Kling code with its HTTP status and the expected move.
CODES = [
    (1000, 401, A.HALT),
    (1001, 401, A.HALT),
    (1002, 401, A.HALT),
    (1003, 401, A.HALT),
    (1004, 401, A.HALT),
    (1100, 429, A.REJECT),
    (1101, 429, A.REJECT),
    (1102, 429, A.REJECT),
    (1103, 403, A.REJECT),
    (1200, 400, A.REJECT),
    (1201, 400, A.LOOK_UP),
    (1202, 400, A.REJECT),
    (1203, 404, A.REJECT),
    (1300, 400, A.REJECT),
    (1301, 400, A.REJECT),
    (1302, 429, A.RETRY),
    (1303, 429, A.REQUEUE),
    (1304, 429, A.REJECT),
    (5000, 500, A.RETRY),
    (5001, 503, A.RETRY),
    (5002, 504, A.RETRY),
]


def _api(code: int | None, status: int) -> ApiError:
    return error_for_code(code, status)("message", status_code=status, code=code)


@pytest.mark.parametrize(("code", "status", "action"), CODES)
def test_every_code(code, status, action):
    """Each Kling code, raised as its own class, gets its documented move."""
    assert classify_create_error(_api(code, status)) is action


@pytest.mark.parametrize(("code", "status", "action"), CODES)
def test_code_wins_over_class(code, status, action):
    """The code decides even on a bare ApiError (the class is only a fallback)."""
    assert classify_create_error(ApiError("m", status_code=status, code=code)) is action


@pytest.mark.parametrize(
    ("status", "action"),
    [(429, A.RETRY), (500, A.RETRY), (503, A.RETRY), (401, A.HALT), (400, A.REJECT)],
)
def test_codeless_answers_by_status(status, action):
    """Without a Kling code the HTTP status decides, via class or directly."""
    assert classify_create_error(_api(None, status)) is action
    assert classify_create_error(ApiError("m", status_code=status)) is action


def test_unknown_code_falls_back_on_status():
    """An undocumented code is classified by its HTTP status."""
    assert classify_create_error(_api(1999, 400)) is A.REJECT
    assert classify_create_error(_api(5999, 502)) is A.RETRY


@pytest.mark.parametrize(
    ("exc", "action"),
    [
        (TransportError("reset"), A.RETRY),
        (UnexpectedResponseError("not JSON", status_code=200), A.RETRY),
        (UnexpectedResponseError("html", status_code=502), A.RETRY),
        (RequestValidationError("prompt too long"), A.REJECT),
        (ConfigError("no key"), A.HALT),
        (StoreError("disk full"), A.HALT),
        (ValueError("a bug"), A.HALT),
        (KeyboardInterrupt(), A.HALT),
    ],
)
def test_other_errors(exc, action):
    """Transport and malformed answers retry, bad input rejects, the rest halts."""
    assert classify_create_error(exc) is action
