"""Which failures are Kling's content moderation: resending them fails the same way."""

from __future__ import annotations

import pytest

from klingmon.domain import TaskStatus
from klingmon.policy import is_moderation_failure
from klingmon.sim._tasks import _FAILURES_IMAGE
from klingmon.sim._validate import MESSAGES

S = TaskStatus
RISK = "Failure to pass the risk control system, please modify the content and retry"


@pytest.mark.parametrize(
    ("status", "message", "last_error", "expected"),
    [
        (S.FAILED, RISK, None, True),
        (S.FAILED, "触发平台的内容风控", None, True),
        (S.FAILED, "Internal generation error", None, False),
        (S.FAILED, "Image pixel is invalid", None, False),
        (S.FAILED, None, None, False),
        (S.FAILED, "", "", False),
        # a refused create: Store.reject keeps "<code>: <message>" in last_error
        (S.REJECTED, "refused (HTTP 400, code 1301)", "1301: refused", True),
        (S.REJECTED, MESSAGES[1301], None, True),
        (S.REJECTED, "mode value 'x' is invalid", "1201: mode value 'x'", False),
        (S.REJECTED, "IP whitelisting policy", "1304: IP whitelisting", False),
        # only a failure counts: a finished or waiting task is never "moderated"
        (S.SUCCEED, RISK, None, False),
        (S.QUEUED, RISK, "1301: x", False),
    ],
)
def test_moderation_is_told_by_code_or_wording(status, message, last_error, expected):
    """Code 1301 or Kling's risk-control wording marks a moderation failure."""
    assert is_moderation_failure(status, message, last_error) is expected


def test_the_simulators_failures_are_told_apart():
    """Of the simulator's failure messages, only the risk-control one is moderation."""
    moderated = {m for m in _FAILURES_IMAGE if is_moderation_failure(S.FAILED, m)}
    assert moderated == {RISK}
