"""The lifecycle rules: ranks never fall, terminal is final."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from klingmon.domain import TERMINAL, TaskStatus
from klingmon.policy import RANK, Verdict, judge, rank

S = TaskStatus


def test_every_status_has_a_rank():
    """RANK covers every status and every terminal status shares the top rank."""
    assert set(RANK) == set(TaskStatus)
    top = max(RANK.values())
    assert {rank(s) for s in TERMINAL} == {top}


@pytest.mark.parametrize(
    ("current", "new", "verdict"),
    [
        (S.SUBMITTED, S.PROCESSING, Verdict.APPLY),
        (S.PROCESSING, S.SUCCEED, Verdict.APPLY),
        (S.SUBMITTED, S.FAILED, Verdict.APPLY),
        (S.QUEUED, S.SUBMITTED, Verdict.APPLY),
        (S.SUBMITTING, S.QUEUED, Verdict.APPLY),
        (S.PROCESSING, S.SUBMITTED, Verdict.IGNORE),
        (S.SUCCEED, S.FAILED, Verdict.IGNORE),
        (S.FAILED, S.SUCCEED, Verdict.IGNORE),
        (S.CANCELLED, S.SUBMITTED, Verdict.IGNORE),
        (S.SUBMITTED, S.QUEUED, Verdict.IGNORE),
    ],
)
def test_judge_examples(current, new, verdict):
    """Forward moves apply, backward and post-terminal ones are ignored."""
    assert judge(current, 1, new, 2) == verdict


def test_same_status_newer_data_refreshes():
    """Equal status with a newer updated_at refreshes; older or unknown does not."""
    assert judge(S.PROCESSING, 100, S.PROCESSING, 200) == Verdict.REFRESH
    assert judge(S.PROCESSING, 200, S.PROCESSING, 100) == Verdict.IGNORE
    assert judge(S.PROCESSING, 200, S.PROCESSING, 200) == Verdict.IGNORE
    assert judge(S.PROCESSING, None, S.PROCESSING, 200) == Verdict.IGNORE
    assert judge(S.PROCESSING, 100, S.PROCESSING, None) == Verdict.IGNORE


def test_terminal_never_refreshes():
    """A terminal task ignores even its own status with newer data."""
    for status in TERMINAL:
        assert judge(status, 1, status, 2) == Verdict.IGNORE


class Lifecycle(RuleBasedStateMachine):
    """Random observations (polls, callbacks, duplicates, reorders) through judge."""

    def __init__(self) -> None:
        super().__init__()
        self.status = S.QUEUED
        self.updated_ms: int | None = None
        self.terminal_seen: TaskStatus | None = None

    @rule(
        new=st.sampled_from(list(TaskStatus)),
        new_ms=st.none() | st.integers(min_value=0, max_value=10_000),
    )
    def observe(self, new: TaskStatus, new_ms: int | None) -> None:
        before, before_ms = self.status, self.updated_ms
        verdict = judge(self.status, self.updated_ms, new, new_ms)
        if verdict == Verdict.APPLY:
            self.status, self.updated_ms = new, new_ms
        elif verdict == Verdict.REFRESH:
            assert new == before
            assert new_ms is not None
            assert before_ms is not None
            assert new_ms > before_ms
            self.updated_ms = new_ms
        else:
            assert verdict == Verdict.IGNORE
        if (before, self.status) != (S.SUBMITTING, S.QUEUED):
            assert rank(self.status) >= rank(before)
        if before in TERMINAL:
            assert (self.status, self.updated_ms) == (before, before_ms)
        if self.status in TERMINAL and self.terminal_seen is None:
            self.terminal_seen = self.status

    @invariant()
    def terminal_is_final(self) -> None:
        if self.terminal_seen is not None:
            assert self.status == self.terminal_seen


Lifecycle.TestCase.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
TestLifecycle = Lifecycle.TestCase
